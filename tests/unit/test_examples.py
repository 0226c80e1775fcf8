"""Issue 13 item 19: the example settings files load into valid settings, name only real settings,
and quorum.example.yaml documents the actual defaults; the LICENSE matches pyproject."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from core.settings import Settings, load_settings
from core.settings_files import _model_of

ROOT = Path(__file__).resolve().parents[2]


def _dump(s: Settings) -> dict:
    d = s.model_dump(mode="json")
    d.pop("data_dir")
    d.pop("database_url")
    return d


def test_example_yaml_gives_exactly_the_defaults(tmp_path: Path) -> None:
    shutil.copy(ROOT / "quorum.example.yaml", tmp_path / "quorum.yaml")
    from_file = load_settings()
    (tmp_path / "quorum.yaml").unlink()
    assert _dump(from_file) == _dump(load_settings())


def test_example_yaml_covers_every_top_level_setting() -> None:
    text = (ROOT / "quorum.example.yaml").read_text()
    keys = set(re.findall(r"^#? ?([a-z_]+):", text, flags=re.M))
    assert set(Settings.model_fields) <= keys, set(Settings.model_fields) - keys


def _field_path(name: str) -> bool:
    model: type[BaseModel] = Settings
    parts = name.removeprefix("QUORUM_").lower().split("__")
    for i, part in enumerate(parts):
        if part not in model.model_fields:
            return False
        sub, _ = _model_of(model.model_fields[part].annotation)
        if i < len(parts) - 1:
            if sub is None:
                return False
            model = sub
    return True


def test_env_example_names_only_real_settings_and_loads_with_every_line_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("QUORUM_DATABASE_URL")  # the test fixture's; here the .env's own must show
    lines = (ROOT / ".env.example").read_text().splitlines()
    settings_lines = [ln.lstrip("# ").strip() for ln in lines if re.match(r"^# ?QUORUM_[A-Z_]+=", ln)]
    assert len(settings_lines) >= 15
    names = [ln.split("=", 1)[0] for ln in settings_lines]
    assert [n for n in names if not _field_path(n)] == []
    (tmp_path / ".env").write_text("\n".join(settings_lines) + "\n")
    s = load_settings()
    assert s.exchange == "bybit" and s.paper.starting_balance == 10000 and s.consensus.quorum == 3
    assert s.database_url == "sqlite:///var/quorum.db" and s.telegram_channel == "@your_channel"
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")  # as shipped (all commented): the defaults
    assert _dump(load_settings()) == _dump(Settings())


@pytest.mark.parametrize("rel", ["LICENSE", "quorum.example.yaml", ".env.example"])
def test_files_ship(rel: str) -> None:
    assert (ROOT / rel).is_file()


def test_license_is_mit_as_pyproject_says() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 Quorum contributors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
