"""Where settings come from: the YAML file (found, read, checked for unknown keys), the pydantic
source that feeds it to `Settings`, and the wording of a bad value's error naming where it came from
(an argument, the environment variable, or the file's key)."""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel
from pydantic_settings import PydanticBaseSettingsSource

from core.errors import ConfigError


def yaml_path() -> Path | None:
    """The settings file in use: QUORUM_CONFIG (must exist) or ./quorum.yaml when present."""
    explicit = os.environ.get("QUORUM_CONFIG")
    if explicit:
        p = Path(explicit)
        if not p.exists():
            raise ConfigError(f"QUORUM_CONFIG={explicit}: file not found")
        return p
    p = Path.cwd() / "quorum.yaml"
    return p if p.exists() or p.is_symlink() else None


def read_yaml(path: Path, model: type[BaseModel]) -> dict[str, Any]:
    """The file's mapping of settings; anything that is not a readable YAML mapping of known keys is
    one ConfigError naming the file (and the line, or the key `model` does not know)."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a YAML settings file")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the settings file ({exc.strerror or type(exc).__name__})") from None
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text YAML file (not UTF-8); is it the right file?") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text YAML file (contains NUL bytes); is it the right file?")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    problems = unknown_keys(model, data)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return data


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the BaseModel in `annotation`, whether it is a list of them) for X, X | None, list[X]."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0], True
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            m, many = _model_of(a)
            if m is not None:
                return m, many
    return None, False


def unknown_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of `data` (recursively, through nested settings and lists of them) that `model` does
    not have, as "unknown key 'paper.startng_balance' (did you mean 'starting_balance'?)"."""
    out: list[str] = []
    fields = model.model_fields
    for key, value in data.items():
        name = str(key)
        where = f"{prefix}{name}"
        if name not in fields:
            close = difflib.get_close_matches(name.lower(), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(fields)}"
            out.append(f"unknown key {where!r}{hint}")
            continue
        sub, many = _model_of(fields[name].annotation)
        if sub is None:
            continue
        if many and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(unknown_keys(sub, item, f"{where}[{i}]."))
        elif not many and isinstance(value, dict):
            out.extend(unknown_keys(sub, value, f"{where}."))
    return out


class YamlSource(PydanticBaseSettingsSource):
    """Reads quorum.yaml (or QUORUM_CONFIG) through `read_yaml`."""

    def __call__(self) -> dict[str, Any]:
        path = yaml_path()
        return {} if path is None else read_yaml(path, self.settings_cls)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False


def _env_names() -> set[str]:
    """QUORUM_* names set in the environment or in ./.env (upper case)."""
    names = {k.upper() for k in os.environ if k.upper().startswith("QUORUM_")}
    env_file = Path.cwd() / ".env"
    if env_file.is_file():
        try:
            from dotenv import dotenv_values

            names |= {k.upper() for k in dotenv_values(env_file) if k and k.upper().startswith("QUORUM_")}
        except Exception:  # noqa: BLE001 - pydantic-settings reports an unreadable .env itself
            pass
    return names


def _in_yaml(data: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _source(loc: tuple[Any, ...], overrides: dict[str, Any], env: set[str], yaml_data: dict[str, Any],
            path: Path | None) -> str:
    """Where the bad value came from: an argument, the environment variable, the file's key."""
    if loc and loc[0] in overrides:
        return "argument"
    for i in range(len(loc), 0, -1):
        name = "QUORUM_" + "__".join(str(p) for p in loc[:i]).upper()
        if name in env:
            return name
    for i in range(len(loc), 0, -1):
        if _in_yaml(yaml_data, loc[:i]):
            key = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if j else str(p))
                          for j, p in enumerate(loc[:i]))
            return f"key {key!r} in {path}"
    return "QUORUM_" + "__".join(str(p) for p in loc).upper()


def _describe(err: Any, where: str) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()))
    value = err.get("input")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if isinstance(value, dict | list):
        return f"setting {loc!r} ({where}): {msg}"
    return f"setting {loc!r} ({where}) = {value!r}: {msg}"
