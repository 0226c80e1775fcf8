"""The real python-telegram-bot client against a local Bot API server, through the outbox."""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from core.types import Action, Decision, Position, PositionEvent, Side, TradePlan
from notify.console import ConsoleSink
from notify.delivery import deliver_pending
from notify.format import entry_key, entry_post, event_key, event_post
from notify.telegram import DeliveryConfigError, TelegramSink
from store import outbox
from store.base import Base
from store.outbox import OutboxPost
from tests.conftest import service_missing
from tests.fakes.telegram_html import check_html
from tests.fakes.telegram_server import FakeTelegramServer

CHANNEL = "@quorum_signals"
PTB_RETRY_AFTER_WARNING = "ignore:.*`retry_after` will be of type:DeprecationWarning"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def tg():
    with FakeTelegramServer() as server:
        yield server


@pytest.fixture
def factory(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    Base.metadata.create_all(engine, tables=[OutboxPost.__table__])
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def make_sink(tg: FakeTelegramServer, token: str | None = None, **kw) -> TelegramSink:
    kw.setdefault("backoff_s", 0.05)
    return TelegramSink(token or tg.token, CHANNEL, tg.base_url, **kw)


def plan(symbol: str = "BTC/USDT:USDT", reason: str = "Trend up on 4h and 1d, funding neutral") -> TradePlan:
    return TradePlan(
        symbol=symbol, side=Side.LONG, entry=100.0, stop=98.0, tp1=103.0, tp2=105.0, leverage=5,
        qty=Decimal("7.5"), notional=750.0, margin=150.0, risk_usd=15.0, risk_pct=1.5,
        liquidation_price=80.5, stop_pct=2.0, reason=reason,
    )


def decision(symbol: str = "BTC/USDT:USDT", dissent: tuple[str, ...] = ("grok",)) -> Decision:
    return Decision(
        symbol=symbol, as_of=T0, action=Action.LONG, confidence=0.72, math_score=0.55, combined_score=0.61,
        votes_valid=5, votes_total=6, tally={"LONG": 0.8, "SHORT": 0.2}, dissent=dissent,
        fallback_to_math=False, reason="4 of 5 valid votes long",
    )


def position(symbol: str = "BTC/USDT:USDT", **kw) -> Position:
    base = dict(
        id="pos-1", symbol=symbol, side=Side.LONG, entry=100.0, qty_initial=Decimal("7.5"),
        qty_open=Decimal("3.75"), stop=100.15, initial_stop=98.0, tp1=103.0, tp2=105.0, leverage=5,
        margin=150.0, liquidation_price=80.5, opened_at=T0, best_price=103.2, phase="trailing",
        tp1_done=True, realised_pnl=11.25, cycle_id="c1",
    )
    base.update(kw)
    return Position(**base)


def enqueue_entry(factory, symbol="BTC/USDT:USDT", reason="Trend up on 4h and 1d, funding neutral", cycle="c1"):
    key = entry_key(cycle, symbol)
    body = entry_post(plan(symbol, reason), decision(symbol))
    with factory() as s:
        outbox.enqueue(s, key, "entry", body, symbol=symbol)
        s.commit()
    return key, body


def enqueue_event(factory, parent_key, ev: PositionEvent, pos: Position, kind: str):
    key = event_key(pos.id, kind)
    body = event_post(ev, pos)
    with factory() as s:
        outbox.enqueue(s, key, kind, body, symbol=pos.symbol, position_id=pos.id, parent_key=parent_key)
        s.commit()
    return key, body


def row(factory, key) -> OutboxPost:
    with factory() as s:
        post = outbox.get_post(s, key)
        assert post is not None
        return post


# ------------------------------------------------------------------------------------------ tests


def test_entry_then_tp1_and_exit_replies_carry_the_entry_message_id(tg, factory):
    entry_k, entry_body = enqueue_entry(factory)
    report = deliver_pending(factory, make_sink(tg))
    assert (report.sent, report.failed, report.errors) == (1, 0, [])

    assert [r.method for r in tg.requests] == ["getMe", "sendMessage"]
    send = tg.calls("sendMessage")[0]
    assert send.token == tg.token
    assert send.content_type.startswith("application/x-www-form-urlencoded")
    assert send.params["chat_id"] == CHANNEL
    assert send.params["parse_mode"] == "HTML"
    assert send.params["text"] == entry_body
    assert "reply_parameters" not in send.params
    entry_id = send.message_id
    assert row(factory, entry_k).message_id == entry_id
    assert row(factory, entry_k).status == "sent"

    pos_tp1 = position(phase="breakeven", stop=100.15, qty_open=Decimal("3.75"))
    tp1 = PositionEvent(position_id="pos-1", symbol=pos_tp1.symbol, kind="tp1", ts=T0, price=103.0,
                        qty=Decimal("3.75"), pnl=11.25, r_multiple=1.5, reason="TP1 reached")
    tp1_k, tp1_body = enqueue_event(factory, entry_k, tp1, pos_tp1, "tp1")
    pos_closed = position(qty_open=Decimal(0), closed_at=T0, exit_reason="stop", realised_pnl=15.0)
    stop = PositionEvent(position_id="pos-1", symbol=pos_closed.symbol, kind="stop", ts=T0, price=101.0,
                         qty=Decimal("3.75"), pnl=3.75, r_multiple=0.5, reason="trailing stop hit")
    stop_k, stop_body = enqueue_event(factory, entry_k, stop, pos_closed, "stop")

    tg.clear()
    report = deliver_pending(factory, make_sink(tg))
    assert report.sent == 2 and report.sent_keys == [tp1_k, stop_k]
    sends = tg.calls("sendMessage")
    assert [r.params["text"] for r in sends] == [tp1_body, stop_body]
    for r in sends:
        assert r.params["reply_parameters"] == {"message_id": entry_id, "allow_sending_without_reply": True}
        assert r.params["chat_id"] == CHANNEL and r.params["parse_mode"] == "HTML"
    assert "+1.50R" in tp1_body and "+$11.25" in tp1_body
    assert "+0.50R" in stop_body and "Trade total" in stop_body
    assert row(factory, tp1_k).message_id == sends[0].message_id
    assert row(factory, stop_k).message_id == sends[1].message_id


def test_hostile_text_is_escaped_on_the_wire(tg, factory):
    symbol = "<script>alert(1)</script>&*_[/USDT"
    reason = "buy & hold <b>now</b> *bold_ [link]( & unmatched `*_["
    key, body = enqueue_entry(factory, symbol=symbol, reason=reason)
    report = deliver_pending(factory, make_sink(tg))
    assert report.sent == 1, report
    sent = tg.calls("sendMessage")[0].params["text"]
    assert sent == body
    assert "<script>" not in sent and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;*_[" in sent
    assert "buy &amp; hold &lt;b&gt;now&lt;/b&gt; *bold_ [link]( &amp; unmatched `*_[" in sent
    parsed = check_html(sent)
    assert "<script>alert(1)</script>&*_[" in parsed.text  # readers see the literal text
    assert reason in parsed.text


@pytest.mark.filterwarnings(PTB_RETRY_AFTER_WARNING)
def test_429_retry_after_is_waited_out(tg, factory):
    key, body = enqueue_entry(factory)
    tg.fail_next("sendMessage", "429", retry_after=1)
    sink = make_sink(tg)
    report = deliver_pending(factory, sink)
    assert report.sent == 1 and report.failed == 0
    sends = tg.calls("sendMessage")
    assert [r.status for r in sends] == [429, 200]
    gap = sends[1].ts - sends[0].ts
    assert 1.0 <= gap < 2.5, gap
    assert sink.waited_s == pytest.approx(1.0)
    assert row(factory, key).status == "sent" and row(factory, key).attempts == 1


@pytest.mark.filterwarnings(PTB_RETRY_AFTER_WARNING)
def test_429_longer_than_the_bound_fails_the_post_for_later(tg, factory):
    key, _ = enqueue_entry(factory)
    tg.fail_next("sendMessage", "429", retry_after=120)
    report = deliver_pending(factory, make_sink(tg, max_retry_after_s=30))
    assert report.failed == 1 and "wait 120s" in report.errors[0]
    assert len(tg.calls("sendMessage")) == 1
    assert row(factory, key).status == "failed"
    assert deliver_pending(factory, make_sink(tg)).sent == 1


def test_500_is_retried_with_backoff(tg, factory):
    key, _ = enqueue_entry(factory)
    tg.fail_next("sendMessage", "500", times=2)
    sink = make_sink(tg, backoff_s=0.05)
    report = deliver_pending(factory, sink)
    assert report.sent == 1
    assert [r.status for r in tg.calls("sendMessage")] == [500, 500, 200]
    assert sink.waited_s == pytest.approx(0.05 + 0.10)


def test_500_beyond_the_retries_marks_failed_then_a_later_run_sends(tg, factory):
    key, _ = enqueue_entry(factory)
    tg.fail_next("sendMessage", "500", times=3)
    report = deliver_pending(factory, make_sink(tg))
    assert report.failed == 1 and report.sent == 0
    post = row(factory, key)
    assert post.status == "failed" and post.attempts == 1 and "gave up after 3 tries" in post.last_error
    report = deliver_pending(factory, make_sink(tg))
    assert report.sent == 1 and row(factory, key).attempts == 2


def test_401_is_reported_once_clearly_without_raising(tg, factory):
    k1, _ = enqueue_entry(factory, symbol="BTC/USDT:USDT")
    k2, _ = enqueue_entry(factory, symbol="ETH/USDT:USDT")
    bad = "999999:WRONG-secret-token-value"
    sink = make_sink(tg, token=bad)
    logs: list[str] = []
    report = deliver_pending(factory, sink, log=logs.append)  # must not raise
    assert report.sent == 0 and report.config_error
    assert "token" in report.config_error and "QUORUM_TELEGRAM_TOKEN" in report.config_error
    assert "WRONG-secret" not in report.config_error and bad not in " ".join(logs)
    assert [r.method for r in tg.requests] == ["getMe"]  # stopped at once, no post attempted
    assert sum("Telegram delivery stopped" in m for m in logs) == 1
    assert row(factory, k1).status == row(factory, k2).status == "pending"


def test_401_on_send_stops_the_batch_and_keeps_posts_pending(tg, factory):
    k1, _ = enqueue_entry(factory, symbol="BTC/USDT:USDT")
    k2, _ = enqueue_entry(factory, symbol="ETH/USDT:USDT")
    tg.fail_next("sendMessage", "401")
    report = deliver_pending(factory, make_sink(tg))
    assert report.config_error and report.sent == 0
    assert len(tg.calls("sendMessage")) == 1
    p1 = row(factory, k1)
    assert p1.status == "pending" and p1.attempts == 0 and "QUORUM_TELEGRAM_TOKEN" in p1.last_error
    assert tg.token not in p1.last_error
    assert row(factory, k2).status == "pending"


def test_chat_not_found_names_the_channel_setting(tg, factory):
    enqueue_entry(factory)
    sink = TelegramSink(tg.token, "@no_such_channel", tg.base_url)
    report = deliver_pending(factory, sink)
    assert "not found" in report.config_error and "QUORUM_TELEGRAM_CHANNEL" in report.config_error
    with pytest.raises(DeliveryConfigError, match="QUORUM_TELEGRAM_CHANNEL"):
        TelegramSink(tg.token, "@no_such_channel", tg.base_url).check()
    assert "can reach chat" in make_sink(tg).check()


class CrashAfterSend:
    """Wraps the real sink: the message goes out, then the process 'dies' before the id is stored."""

    def __init__(self, inner: TelegramSink):
        self.inner = inner
        self.name, self.chat_id, self.records_delivery = inner.name, inner.chat_id, True

    def open(self):
        self.inner.open()

    def close(self):
        self.inner.close()

    def send(self, text, reply_to_message_id=None):
        self.inner.send(text, reply_to_message_id)
        raise SystemExit("killed between send and store")


def test_restart_between_send_and_store_does_not_resend(tg, factory):
    key, _ = enqueue_entry(factory)
    with pytest.raises(SystemExit):
        deliver_pending(factory, CrashAfterSend(make_sink(tg)))
    assert len(tg.calls("sendMessage")) == 1
    post = row(factory, key)
    assert post.status == "in_flight" and post.message_id is None and post.attempts == 1

    logs: list[str] = []
    report = deliver_pending(factory, make_sink(tg), log=logs.append)  # the "restart"
    assert report.sent == 0 and report.in_flight_keys == [key]
    assert len(tg.calls("sendMessage")) == 1  # not sent again
    assert any("--resend-in-flight" in m for m in logs)
    assert row(factory, key).status == "in_flight"

    # the operator checked the channel and releases it by hand
    with factory() as s:
        outbox.release_in_flight(s, key)
        s.commit()
    assert deliver_pending(factory, make_sink(tg)).sent == 1
    assert len(tg.calls("sendMessage")) == 2


def test_manual_crash_simulation_mark_in_flight_then_no_mark_sent(tg, factory):
    key, body = enqueue_entry(factory)
    sink = make_sink(tg)
    with factory() as s:
        post = outbox.get_post(s, key)
        outbox.mark_in_flight(s, post, chat_id=CHANNEL)
        s.commit()
    sink.send(body)  # went out; the process dies before mark_sent
    report = deliver_pending(factory, make_sink(tg))
    assert report.in_flight_keys == [key] and report.sent == 0
    assert len(tg.calls("sendMessage")) == 1


def test_connection_dropped_after_send_is_left_in_flight(tg, factory):
    key, _ = enqueue_entry(factory)
    tg.fail_next("sendMessage", "drop")
    report = deliver_pending(factory, make_sink(tg))
    assert report.in_flight_keys == [key] and report.sent == 0
    assert len(tg.calls("sendMessage")) == 1 and len(tg.messages) == 1
    assert row(factory, key).status == "in_flight"
    assert deliver_pending(factory, make_sink(tg)).sent == 0
    assert len(tg.calls("sendMessage")) == 1


def test_a_post_with_a_stored_message_id_is_never_sent_twice(tg, factory):
    key, body = enqueue_entry(factory)
    assert deliver_pending(factory, make_sink(tg)).sent == 1
    mid = row(factory, key).message_id
    # the same post enqueued again by a retried task: the existing row comes back
    with factory() as s:
        again = outbox.enqueue(s, key, "entry", body + " changed")
        assert again.message_id == mid and again.status == "sent"
        s.commit()
        assert len(outbox.list_posts(s)) == 1
    assert deliver_pending(factory, make_sink(tg)).sent == 0
    # even a row whose status was wrongly reset is not sent while it holds a message id
    with factory() as s:
        post = outbox.get_post(s, key)
        post.status = "pending"
        s.commit()
        with pytest.raises(ValueError, match="never sent twice"):
            outbox.mark_in_flight(s, post)
        with pytest.raises(ValueError, match="never sent twice"):
            outbox.release_in_flight(s, key)
    assert deliver_pending(factory, make_sink(tg)).sent == 0
    assert len(tg.calls("sendMessage")) == 1


def test_reply_waits_for_its_parent(tg, factory):
    entry_k, _ = enqueue_entry(factory)
    pos = position(phase="breakeven")
    ev = PositionEvent(position_id="pos-1", symbol=pos.symbol, kind="tp1", ts=T0, price=103.0,
                       qty=Decimal("3.75"), pnl=11.25, r_multiple=1.5)
    tp1_k, _ = enqueue_event(factory, entry_k, ev, pos, "tp1")
    tg.fail_next("sendMessage", "500", times=3)
    report = deliver_pending(factory, make_sink(tg))
    assert report.failed == 1 and report.waiting_keys == [tp1_k]
    assert row(factory, tp1_k).status == "pending"
    report = deliver_pending(factory, make_sink(tg))
    assert report.sent_keys == [entry_k, tp1_k]
    entry_id = row(factory, entry_k).message_id
    assert tg.calls("sendMessage")[-1].params["reply_parameters"]["message_id"] == entry_id


def test_rejected_message_is_dead_and_its_replies_go_out_alone(tg, factory):
    entry_k, _ = enqueue_entry(factory)
    pos = position()
    ev = PositionEvent(position_id="pos-1", symbol=pos.symbol, kind="stop", ts=T0, price=99.0, qty=Decimal(1))
    stop_k, _ = enqueue_event(factory, entry_k, ev, pos, "stop")
    tg.fail_next("sendMessage", "bad_request", description="Bad Request: can't parse entities")
    report = deliver_pending(factory, make_sink(tg))
    assert report.dead_keys == [entry_k] and report.sent_keys == [stop_k]
    assert row(factory, entry_k).status == "dead"
    assert "reply_parameters" not in tg.calls("sendMessage")[-1].params


def test_without_a_token_posts_go_to_the_console_and_stay_pending(factory):
    key, _ = enqueue_entry(factory, reason="a & b <i>")
    buf = io.StringIO()
    report = deliver_pending(factory, ConsoleSink(buf))
    assert report.console == 1 and report.sent == 0
    out = buf.getvalue()
    assert key in out and "a & b <i>" in out and "<b>" not in out
    assert row(factory, key).status == "pending" and row(factory, key).attempts == 0
    assert row(factory, key).printed_at is not None
    again = io.StringIO()
    assert deliver_pending(factory, ConsoleSink(again)).console == 0  # printed once, not every cycle
    assert again.getvalue() == ""


def test_enqueue_survives_a_concurrent_insert_of_the_same_key(factory, monkeypatch):
    key, _ = enqueue_entry(factory)
    real_get = outbox.get_post
    calls = {"n": 0}

    def racing_get(session, k):  # the first lookup misses, as if the other writer committed just after it
        calls["n"] += 1
        return None if calls["n"] == 1 else real_get(session, k)

    monkeypatch.setattr(outbox, "get_post", racing_get)
    with factory() as s:
        other = outbox.enqueue(s, "other:key", "news", "kept")  # earlier work in the same transaction
        calls["n"] = 0
        again = outbox.enqueue(s, key, "entry", "duplicate")
        assert again.key == key and again.text != "duplicate"
        s.commit()
    monkeypatch.setattr(outbox, "get_post", real_get)
    with factory() as s:
        assert sorted(p.key for p in outbox.list_posts(s)) == sorted([key, other.key])


def test_telegram_unreachable_is_reported_and_posts_stay_pending(factory):
    key, _ = enqueue_entry(factory)
    server = FakeTelegramServer().start()
    base_url = server.base_url
    server.stop()  # nothing listens on that port any more: connection refused
    sink = TelegramSink(server.token, CHANNEL, base_url, backoff_s=0.01)
    report = deliver_pending(factory, sink)  # must not raise
    assert report.sent == 0 and report.errors and "could not open telegram" in report.errors[0]
    assert "gave up after 3 tries" in report.errors[0]
    assert row(factory, key).status == "pending" and row(factory, key).attempts == 0


def test_database_trouble_never_raises(tg):
    def broken():
        raise RuntimeError("database is down")

    report = deliver_pending(broken, make_sink(tg))
    assert report.errors and "outbox unavailable" in report.errors[0]


def test_cli_lists_sends_and_releases(tg, factory):
    from typer.testing import CliRunner

    from cli import outbox as cli_outbox

    key, body = enqueue_entry(factory)
    cli_outbox.session_factory_provider = lambda settings: factory
    cli_outbox.sink_provider = lambda settings: make_sink(tg)
    try:
        runner = CliRunner()
        res = runner.invoke(cli_outbox.app, [], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "c1:BTC/USDT:USDT:entry" in res.output and "pending" in res.output
        res = runner.invoke(cli_outbox.app, ["--send"])
        assert res.exit_code == 0, res.output
        assert "sent 1" in res.output
        res = runner.invoke(cli_outbox.app, ["--status", "sent"], env={"COLUMNS": "200"})
        assert str(row(factory, key).message_id) in res.output
        res = runner.invoke(cli_outbox.app, ["--resend-in-flight", key])
        assert res.exit_code == 1 and "never sent twice" in res.output
        res = runner.invoke(cli_outbox.app, ["--resend-in-flight", "no-such-key"])
        assert res.exit_code == 2 and "no outbox post with key 'no-such-key'" in res.output
        cli_outbox.sink_provider = lambda settings: ConsoleSink(io.StringIO())
        assert runner.invoke(cli_outbox.app, ["--send"]).exit_code == 1
    finally:
        cli_outbox.session_factory_provider = None
        cli_outbox.sink_provider = None


@pytest.mark.services
def test_outbox_on_postgresql(tg):
    url = os.environ.get("QUORUM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"outbox_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        service_missing("PostgreSQL", str(exc))
    engine = create_engine(url, execution_options={"schema_translate_map": {None: schema}})
    try:
        Base.metadata.create_all(engine, tables=[OutboxPost.__table__])
        factory = sessionmaker(engine, expire_on_commit=False)
        key, _ = enqueue_entry(factory)
        with factory() as s:  # idempotent enqueue, also when the unique index fires inside a savepoint
            assert outbox.enqueue(s, key, "entry", "x").id == outbox.get_post(s, key).id
            s.commit()
        assert deliver_pending(factory, make_sink(tg)).sent == 1
        post = row(factory, key)
        assert post.status == "sent" and post.message_id and post.sent_at.tzinfo is not None
        assert deliver_pending(factory, make_sink(tg)).sent == 0
        with factory() as s:
            assert outbox.parent_message_id(s, key) == post.message_id
            assert [p.key for p in outbox.list_posts(s, status="sent")] == [key]
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
