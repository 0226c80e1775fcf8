"""`backtest-sweep` on a real dask.distributed cluster on loopback (two worker processes): 3 risk
profiles × 2 symbol sets × 1 window, each variant a task on the cluster, one comparison report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


@pytest.fixture
def cluster():  # type: ignore[no-untyped-def]
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as c:
        yield c


def test_sweep_fans_out_on_the_dask_cluster_and_writes_one_report(prefect_harness, cluster, monkeypatch,  # noqa: ARG001
                                                                    tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from backtest.sweep import Variant, run_variant
    from cli.app import app

    monkeypatch.setenv("QUORUM_DASK_ADDRESS", cluster.scheduler_address)
    r = CliRunner().invoke(app, ["backtest", "--sweep", "--from", "2025-05-20", "--to", "2025-05-21", "--test-days", "2",
                                 "--profiles", "default,conservative,kelly",
                                 "--symbol-sets", "BTC/USDT:USDT;ETH/USDT:USDT,SOL/USDT:USDT",
                                 "--out", str(tmp_path / "reports"), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["variants"] == 6 and len(res["rows"]) == 6
    workers = set(cluster.scheduler_info["workers"])
    assert set(res["workers"]) <= workers and res["workers"], (res["workers"], workers)
    data = json.loads(Path(res["report_json"]).read_text())
    names = {x["variant"]["name"] for x in data["results"]}
    assert len(names) == 6 and {row["variant"] for row in res["rows"]} == names
    # each variant's numbers are its own backtest's (the same as running it here)
    first = data["results"][0]
    again = run_variant(Variant(**{**first["variant"], "symbols": tuple(first["variant"]["symbols"])}))
    assert again["metrics"] == first["metrics"]
    assert sum(x["metrics"]["n_trades"] for x in data["results"]) > 0
    html = Path(res["report_html"]).read_text()
    assert html.count("<tr>") == 7  # header + 6 variants
    for n in names:
        assert n in html
    assert all(x["equity"]["equity"] for x in data["results"])


def test_sweep_variants_and_windows() -> None:
    from backtest.sweep import parse_symbol_sets, sweep_windows, variants
    from core.errors import ConfigError

    ws = sweep_windows("2025-05-01", "2025-05-10", 2, 3)
    assert [(a.isoformat(), b.isoformat()) for a, b in ws] == [
        ("2025-05-03T00:00:00+00:00", "2025-05-05T23:00:00+00:00"),
        ("2025-05-06T00:00:00+00:00", "2025-05-08T23:00:00+00:00"),
        ("2025-05-09T00:00:00+00:00", "2025-05-10T23:00:00+00:00")]
    vs = variants(["default", "kelly"], parse_symbol_sets("BTC/USDT:USDT;eth/usdt:usdt,SOL/USDT:USDT"), ws)
    assert len(vs) == 2 * 2 * 3 and len({v.name for v in vs}) == 12
    assert vs[3].symbols == ("ETH/USDT:USDT", "SOL/USDT:USDT")
    with pytest.raises(ConfigError, match="unknown risk profile"):
        variants(["yolo"], [["BTC/USDT:USDT"]], ws)
    with pytest.raises(ConfigError, match="no test window"):
        sweep_windows("2025-05-01", "2025-05-02", 5, 3)


def test_the_default_local_cluster_gives_the_sequential_results(prefect_harness, monkeypatch,  # noqa: ARG001
                                                                tmp_path: Path) -> None:
    """No cluster address: the sweep starts its own LocalCluster (2 worker processes on loopback,
    prefect-dask's DaskTaskRunner) and every variant's numbers equal the same backtest run here,
    one after the other."""
    from backtest.sweep import Variant, run_variant
    from flows.sweep import sweep

    monkeypatch.delenv("QUORUM_DASK_ADDRESS", raising=False)
    monkeypatch.setenv("QUORUM_DASK_WORKERS", "2")
    res = sweep(start="2025-05-20", end="2025-05-21", profiles="default,kelly",
                symbol_sets="BTC/USDT:USDT;ETH/USDT:USDT,SOL/USDT:USDT", test_days=2, out_dir=str(tmp_path / "r"))
    assert res["variants"] == 4
    assert res["workers"] and len(res["workers"]) <= 2, res["workers"]
    assert all(w.startswith("tcp://127.0.0.1:") for w in res["workers"]), "ran on the local cluster's workers"
    on_dask = {r["variant"]["name"]: r for r in res["results"]}
    assert len(on_dask) == 4
    for name, r in on_dask.items():
        here = run_variant(Variant(**{**r["variant"], "symbols": tuple(r["variant"]["symbols"])}))
        assert here["worker"] == "local"
        assert here["metrics"] == r["metrics"], name
        assert here["equity"] == r["equity"], name
        assert here["open_at_end"] == r["open_at_end"], name
    assert sum(r["metrics"]["n_trades"] for r in on_dask.values()) > 0, "a comparison of something: kelly on BTC trades"
    assert Path(res["report_html"]).exists() and Path(res["report_json"]).exists()
