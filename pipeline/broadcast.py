"""Delivery of the outbox's pending posts after a run (Telegram, else the console). Never raises:
a notifier failure never fails a trading cycle."""

from __future__ import annotations

import logging
import sys
from typing import Any

from core.settings import Settings
from pipeline.account import Factory

log = logging.getLogger("quorum.broadcast")


def deliver(factory: Factory, settings: Settings, console: bool = True) -> dict[str, Any]:
    """Deliver pending posts (Telegram) or print this run's posts (console). Never raises."""
    try:
        from notify.delivery import deliver_pending
        from notify.telegram import sink_from_settings

        sink = sink_from_settings(settings)
        if not getattr(sink, "records_delivery", False):
            if not console:
                return {"sink": "console", "printed": 0,
                        "note": "no Telegram token/channel: posts stay pending in the outbox (`quorum outbox`)"}
            from notify.console import ConsoleSink

            sink = ConsoleSink(stream=sys.stdout)
        rep = deliver_pending(factory, sink, log=log)
        return {"sink": getattr(sink, "name", "?"), "sent": rep.sent, "failed": rep.failed,
                "config_error": rep.config_error, "errors": rep.errors[:5]}
    except Exception as exc:  # noqa: BLE001
        return {"sink": "?", "error": f"{type(exc).__name__}: {exc}"}
