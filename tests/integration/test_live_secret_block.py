"""Exchange keys from a Prefect Secret block (QUORUM_EXCHANGE_SECRET_BLOCK), on the real Prefect API of the
test harness; a missing block is one clear error naming the setting."""

from __future__ import annotations

import uuid

import pytest

from core.errors import ConfigError
from core.settings import load_settings
from exchange.live_client import build_client

pytestmark = pytest.mark.prefect


def test_keys_from_a_prefect_secret_block(prefect_harness) -> None:  # noqa: ARG001
    from prefect.blocks.system import Secret

    name = f"quorum-keys-{uuid.uuid4().hex[:8]}"
    Secret(value={"api_key": "block-key", "secret": "block-secret"}).save(name)
    client = build_client(load_settings(mode="live", live_trading_confirmed=True, exchange_secret_block=name))
    assert (client.apiKey, client.secret) == ("block-key", "block-secret")
    with pytest.raises(ConfigError, match="QUORUM_EXCHANGE_SECRET_BLOCK='no-such-block'") as err:
        build_client(load_settings(mode="live", live_trading_confirmed=True, exchange_secret_block="no-such-block"))
    assert "block-secret" not in str(err.value)
