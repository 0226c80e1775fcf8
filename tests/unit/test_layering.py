"""DESIGN.md §2: core/ and risk/ import no Prefect, ccxt, SQLAlchemy, httpx or SDK; risk/ imports only core/;
pipeline/ (plain functions) imports no Prefect; flows/ never imports the CLI, the dashboard or the CLI-only
code; tasks/ imports neither flows/ nor the CLI.

Parses the source with `ast` (nothing is imported), including imports nested in functions and
`importlib.import_module("...")` / `__import__("...")` calls with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"prefect", "ccxt", "sqlalchemy", "httpx", "openai", "anthropic", "xai_sdk", "ollama", "telegram",
             "redis", "psycopg", "alembic", "requests", "aiohttp", "grpc"}
PROJECT_PACKAGES = {"core", "risk", "agents", "exchange", "store", "notify", "tasks", "flows", "deployments",
                    "bench", "cli", "backtest", "pipeline", "dashboard"}
ALLOWED_PROJECT = {"core": {"core"}, "risk": {"core", "risk"}}
# the other layers: which project packages they must NOT import, and which libraries
FORBIDDEN_PROJECT = {
    "pipeline": {"tasks", "flows", "cli", "dashboard", "deployments", "bench"},
    "tasks": {"flows", "cli", "dashboard", "deployments", "bench"},
    "flows": {"cli", "dashboard", "deployments", "bench"},
    "backtest": {"flows", "cli", "dashboard", "deployments", "bench"},
    "exchange": {"tasks", "flows", "cli", "dashboard", "pipeline", "backtest"},
    "store": {"tasks", "flows", "cli", "dashboard", "pipeline", "backtest"},
}
FORBIDDEN_LIBS = {"pipeline": {"prefect"}}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import stays inside its own package
                pkg = path.relative_to(ROOT).parts[0]
                found.append((node.lineno, f"{pkg}.{node.module or ''}"))
            elif node.module:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in {"import_module", "__import__"} and node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.lineno, str(node.args[0].value)))
    return found


def sources(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if ".venv" not in f.parts]


def problems_in(package: str, judge) -> list[str]:  # type: ignore[no-untyped-def]
    """Every import of `package`'s files that `judge(top_level_name)` objects to (it returns why, or None)."""
    files = sources(package)
    assert files, f"{package}/ has no Python files"
    problems = []
    for f in files:
        for lineno, mod in imported_modules(f):
            why = judge(mod.split(".")[0])
            if why:
                problems.append(f"{f.relative_to(ROOT)}:{lineno} imports {mod} ({why})")
    return problems


@pytest.mark.parametrize("package", ["core", "risk"])
def test_layer_imports(package):
    def judge(top: str) -> str | None:
        if top in FORBIDDEN:
            return "forbidden in the pure layers"
        if top in PROJECT_PACKAGES and top not in ALLOWED_PROJECT[package]:
            return f"{package}/ may import only {sorted(ALLOWED_PROJECT[package])}"
        return None

    problems = problems_in(package, judge)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_PROJECT))
def test_outer_layers(package):
    def judge(top: str) -> str | None:
        if top in FORBIDDEN_PROJECT[package]:
            return f"{package}/ may not import {top}/"
        if top in FORBIDDEN_LIBS.get(package, set()):
            return f"{package}/ holds plain functions: no {top}"
        return None

    problems = problems_in(package, judge)
    assert not problems, "\n".join(problems)


def test_flows_hold_only_flows():
    """flows/ holds Prefect flows: every module but the package's own __init__ defines a @flow."""
    for f in sources("flows"):
        if f.name == "__init__.py":
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"))
        decorated = [d for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for d in n.decorator_list]
        names = {getattr(d.func if isinstance(d, ast.Call) else d, "id", "") for d in decorated}
        assert "flow" in names, f"{f.relative_to(ROOT)} defines no Prefect flow: it belongs in another package"


def test_checker_catches_violations(tmp_path):
    bad = ROOT / "risk" / "_layering_probe_tmp.py"
    assert not bad.exists()
    probe = tmp_path / "probe.py"
    probe.write_text("import os\ndef f():\n    import ccxt.async_support\n    from prefect import flow\n"
                     "    importlib.import_module('sqlalchemy.orm')\nfrom exchange.base import MarketRules\n")
    mods = {m for _, m in imported_modules(probe)}
    assert {"ccxt.async_support", "prefect", "sqlalchemy.orm", "exchange.base", "os"} <= mods


# DESIGN: one broker interface; nothing outside the two brokers knows which one it holds (no `if live:`)
BROKER_PRIVATE_NAMES = {"fills_simulated", "LiveBroker", "PaperBroker", "OrderDesk"}
BROKER_PRIVATE_MODULES = {"exchange.live_broker", "exchange.paper_broker", "exchange.live_orders"}


def broker_leaks(path: Path) -> list[str]:
    """Where `path` names a broker implementation (its class, its module, or a flag saying which it is)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = [f"{lineno}: imports {mod}" for lineno, mod in imported_modules(path) if mod in BROKER_PRIVATE_MODULES]
    for node in ast.walk(tree):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if isinstance(node, ast.ImportFrom):
            found += [f"{node.lineno}: imports {a.name}" for a in node.names if a.name in BROKER_PRIVATE_NAMES]
        elif name in BROKER_PRIVATE_NAMES:
            found.append(f"{node.lineno}: uses {name}")
    return found


def test_only_the_brokers_know_which_broker():
    """Outside exchange/ (where exchange/factory.py picks the implementation) no module imports a broker
    implementation or asks which one it holds: the cycle, the monitor, the CLI and the backtest hold a
    `Broker` and call its port (`walk`, `open_position`, `reconcile`, ...)."""
    problems = [f"{f.relative_to(ROOT)}:{where}" for pkg in sorted(PROJECT_PACKAGES - {"exchange"})
                if (ROOT / pkg).is_dir() for f in sources(pkg) for where in broker_leaks(f)]
    assert not problems, "\n".join(problems)
    # the port itself carries no such flag
    port = (ROOT / "exchange" / "broker.py").read_text(encoding="utf-8")
    assert "fills_simulated" not in port


def test_broker_leak_checker_catches_violations(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from exchange.live_broker import LiveBroker\ndef f(b):\n    if b.fills_simulated:\n"
                     "        return isinstance(b, PaperBroker)\n")
    leaks = broker_leaks(probe)
    assert any("exchange.live_broker" in x for x in leaks) and any("fills_simulated" in x for x in leaks)
    assert any("PaperBroker" in x for x in leaks)
