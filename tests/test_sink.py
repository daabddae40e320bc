"""Tests of ingest.sink: line protocol, round trips through real VictoriaMetrics, error classification."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from servers import MosquittoServer, VictoriaServer, free_port, require_binary, run_mosquitto

from detector.types import Verdict
from ingest.messages import Reading
from ingest.sink import (
    SQLITE_SCHEMA,
    InfluxSink,
    Sink,
    SinkAuthError,
    SinkFatal,
    SinkStopped,
    SqliteSink,
    reading_line,
    verdict_line,
)
from telemetry.counters import Counters

MS = 1_000_000  # VictoriaMetrics keeps millisecond precision: test timestamps are whole ms


def _ts(year: int, second: int = 0) -> int:
    return int(datetime(year, 6, 1, tzinfo=UTC).timestamp()) * 1_000_000_000 + second * 1000 * MS


def _readings(n: int, *, marker: str = "") -> list[Reading]:
    return [
        Reading(
            asset=f"asset {i % 3}",
            ts_ns=_ts(2020) + i * MS,
            values={"temp": float(i), "flow": i + 0.25, "bad": float(i) if marker and i % 7 == 3 else 1.0},
            tags={"site": f"{marker}x" if marker and i % 7 == 3 else "plant"},
        )
        for i in range(n)
    ]


# ----------------------------------------------------------------------------- line protocol


def test_reading_line_escapes_sorts_tags_and_writes_floats() -> None:
    r = Reading(
        asset="pump 1,a=b",
        ts_ns=123,
        values={"flow,rate": 1, "temp C": 2.5, "p=x": -0.0},
        tags={"zone": "north side", "line": "l,1", "empty": ""},
    )
    assert reading_line("my meas,x", r) == (
        r"my\ meas\,x,asset=pump\ 1\,a\=b,line=l\,1,zone=north\ side "
        r"flow\,rate=1.0,temp\ C=2.5,p\=x=-0.0 123"  # fields keep the reading's order
    )


def test_reading_line_drops_non_finite_and_neutralises_newlines() -> None:
    r = Reading(asset="a\nb", ts_ns=5, values={"x": math.nan, "y": math.inf, "z": 1e-7})
    assert reading_line("m", r) == "m,asset=a\\ b z=1e-07 5"
    assert reading_line("m", Reading(asset="a", ts_ns=1, values={"x": math.nan})) is None


def test_verdict_line_uses_float_fields() -> None:
    v = Verdict(asset="a 1", ts_ns=7, score=3.5, probability=0.25, anomaly=True)
    assert verdict_line("anomaly", v) == r"anomaly,asset=a\ 1 anomaly=1.0,probability=0.25,score=3.5 7"
    judged = Verdict(asset="a", ts_ns=7, score=3.5, probability=0.25, anomaly=False, alarm_enter=0.9999)
    assert (
        verdict_line("anomaly", judged) == "anomaly,asset=a alarm_enter=0.9999,anomaly=0.0,probability=0.25,score=3.5 7"
    )


# -------------------------------------------------------------------- real VictoriaMetrics


def _series(victoria: VictoriaServer, match: str) -> dict[tuple[str, ...], dict[int, float]]:
    out: dict[tuple[str, ...], dict[int, float]] = {}
    for s in victoria.export(match):
        key = tuple(f"{k}={v}" for k, v in sorted(s["metric"].items()))
        out[key] = dict(zip(s["timestamps"], map(float, s["values"]), strict=True))
    return out


@pytest.mark.integration
def test_readings_round_trip_through_victoria(victoria: VictoriaServer) -> None:
    counters = Counters()
    meas = f"rt_{uuid.uuid4().hex[:8]}"
    assets = ["pump 1", "fan,2", "mixer=3", "back\\slash"]
    sensors = ["temp C", "flow,rate", "p=1", "plain"]
    years = [2014, 2016, 2018, 2020]
    readings = [
        Reading(
            asset=assets[i % 4],
            ts_ns=_ts(years[i % 4], i),
            values={s: (i if j == 0 else i * 1.5 + j / 8) for j, s in enumerate(sensors)},
            tags={"site": "plant A", "line": f"l,{i % 2}"},
        )
        for i in range(400)
    ]
    sink = InfluxSink(victoria.url, "org", "bucket", "token", measurement=meas, counters=counters)
    try:
        sink.write(readings)
    finally:
        sink.close()

    expected: dict[tuple[str, ...], dict[int, float]] = {}
    for r in readings:
        for sensor, value in r.values.items():
            labels = {"__name__": f"{meas}_{sensor}", "asset": r.asset, **r.tags}
            key = tuple(f"{k}={v}" for k, v in sorted(labels.items()))
            expected.setdefault(key, {})[r.ts_ns // MS] = float(value)
    assert _series(victoria, f'{{__name__=~"{meas}_.*"}}') == expected
    assert victoria.count_samples(f'{{__name__=~"{meas}_.*"}}') == 400 * 4
    assert counters.get("plantwatch_readings_written_total") == 400
    assert counters.total("plantwatch_sink_retries_total") == 0


@pytest.mark.integration
def test_verdicts_land_in_anomaly_series(victoria: VictoriaServer) -> None:
    asset = f"v {uuid.uuid4().hex[:8]}"
    verdicts = [
        Verdict(asset=asset, ts_ns=_ts(2015, i), score=i * 0.5, probability=i / 100, anomaly=i % 2 == 1)
        for i in range(50)
    ]
    sink = InfluxSink(victoria.url, "org", "bucket", "token", counters=Counters())
    try:
        sink.write_verdicts(verdicts)
    finally:
        sink.close()
    for name, get in [
        ("anomaly_score", lambda v: v.score),
        ("anomaly_probability", lambda v: v.probability),
        ("anomaly_anomaly", lambda v: 1.0 if v.anomaly else 0.0),
    ]:
        got = _series(victoria, f'{name}{{asset="{asset}"}}')
        assert got == {(f"__name__={name}", f"asset={asset}"): {v.ts_ns // MS: get(v) for v in verdicts}}


# ------------------------------------------------------------------- scripted HTTP peer
# A real InfluxDB (or VictoriaMetrics) cannot be made to answer 429/503-with-Retry-After/413/400/
# 401 on demand, so these tests use a tiny real HTTP server whose only job is to script statuses.


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Scripted:
    """Real HTTP server on loopback; ``script(body, request_index)`` decides each reply."""

    def __init__(self, script: Callable[[bytes, int], Reply], port: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply = script(body, len(outer.bodies))
                outer.bodies.append(body)
                outer.statuses.append(reply.status)
                time.sleep(reply.delay_s)
                payload = b"" if reply.status == 204 else b'{"code":"x","message":"scripted"}'
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away (test_timeout_is_retried)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def lines(self, statuses: tuple[int, ...] = (204,)) -> list[str]:
        """Lines of the requests answered with one of ``statuses``, in arrival order."""
        return [
            line
            for body, st in zip(self.bodies, self.statuses, strict=True)
            if st in statuses
            for line in body.decode().split("\n")
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def scripted(script: Callable[[bytes, int], Reply], port: int = 0) -> Iterator[Scripted]:
    server = Scripted(script, port)
    try:
        yield server
    finally:
        server.close()


class FakeSleep:
    def __init__(self, on_call: Callable[[int], None] | None = None) -> None:
        self.calls: list[float] = []
        self.on_call = on_call

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.on_call:
            self.on_call(len(self.calls))


def _sink(url: str, counters: Counters, **kw: object) -> InfluxSink:
    return InfluxSink(url, "org", "bucket", "token", counters=counters, **kw)  # type: ignore[arg-type]


def _all_lines(readings: list[Reading]) -> list[str]:
    return [line for r in readings if (line := reading_line("readings", r))]


def test_503_retry_after_is_honoured() -> None:
    counters, sleep = Counters(), FakeSleep()
    readings = _readings(10)
    with scripted(lambda b, n: Reply(503, {"Retry-After": "1"}) if n == 0 else Reply(204)) as srv:
        sink = _sink(srv.url, counters, sleep=sleep, backoff_initial_s=0.01)
        sink.write(readings)
        sink.close()
    assert sleep.calls == [1.0]
    assert srv.statuses == [503, 204]
    assert srv.bodies[0] == srv.bodies[1]
    assert srv.lines() == _all_lines(readings)
    assert counters.get("plantwatch_sink_retries_total") == 1
    assert counters.get("plantwatch_readings_written_total") == 10


def test_429_and_5xx_back_off_exponentially_with_cap() -> None:
    counters, sleep = Counters(), FakeSleep()
    codes = [429, 500, 502, 503, 504]
    with scripted(lambda b, n: Reply(codes[n]) if n < len(codes) else Reply(204)) as srv:
        sink = _sink(srv.url, counters, sleep=sleep, backoff_initial_s=0.5, backoff_max_s=3.0)
        sink.write(_readings(3))
        sink.close()
    assert sleep.calls == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert counters.get("plantwatch_sink_retries_total") == 5
    assert counters.get("plantwatch_readings_written_total") == 3


def test_retry_logs_warning_with_status(caplog: pytest.LogCaptureFixture) -> None:
    with scripted(lambda b, n: Reply(429, {"Retry-After": "2"}) if n == 0 else Reply(204)) as srv:
        sink = _sink(srv.url, Counters(), sleep=FakeSleep())
        with caplog.at_level(logging.WARNING, logger="ingest.sink"):
            sink.write(_readings(1))
        sink.close()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "HTTP 429" in caplog.records[0].getMessage()


def test_connection_refused_is_retried_until_the_server_appears() -> None:
    counters = Counters()
    port = free_port()
    servers: list[Scripted] = []
    sleep = FakeSleep(lambda n: servers.append(Scripted(lambda b, i: Reply(204), port)) if n == 2 else None)
    sink = _sink(f"http://127.0.0.1:{port}", counters, sleep=sleep)
    try:
        sink.write(_readings(4))
    finally:
        sink.close()
        for s in servers:
            s.close()
    assert sleep.calls == [0.5, 1.0]
    assert len(servers[0].lines()) == 4
    assert counters.get("plantwatch_readings_written_total") == 4


def test_timeout_is_retried() -> None:
    counters, sleep = Counters(), FakeSleep()
    with scripted(lambda b, n: Reply(204, delay_s=1.0 if n == 0 else 0.0)) as srv:
        sink = _sink(srv.url, counters, sleep=sleep, timeout_s=0.2)
        started = time.monotonic()
        sink.write(_readings(2))
        elapsed = time.monotonic() - started
        sink.close()
    assert len(srv.bodies) == 2
    assert sleep.calls == [0.5]
    assert elapsed < 0.9
    assert counters.get("plantwatch_sink_retries_total") == 1


def test_413_splits_until_bodies_fit() -> None:
    counters = Counters()
    limit = 1500
    readings = _readings(101)
    with scripted(lambda b, n: Reply(413) if len(b) > limit else Reply(204)) as srv:
        sink = _sink(srv.url, counters, sleep=FakeSleep())
        sink.write(readings)
        sink.close()
    assert srv.lines() == _all_lines(readings)  # everything, once, in order
    assert all(len(b) <= limit for b, st in zip(srv.bodies, srv.statuses, strict=True) if st == 204)
    assert 413 in srv.statuses
    assert counters.get("plantwatch_readings_written_total") == 101
    assert counters.total("plantwatch_points_dropped_total") == 0
    assert counters.total("plantwatch_sink_retries_total") == 0


@pytest.mark.parametrize("status", [400, 422])
def test_bad_lines_are_isolated_and_dropped(status: int, caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters()
    readings = _readings(60, marker="BAD")
    bad = [line for line in _all_lines(readings) if "BAD" in line]
    good = [line for line in _all_lines(readings) if "BAD" not in line]
    assert len(bad) == 9
    with scripted(lambda b, n: Reply(status) if b"BAD" in b else Reply(204)) as srv:
        sink = _sink(srv.url, counters, sleep=FakeSleep())
        with caplog.at_level(logging.WARNING, logger="ingest.sink"):
            sink.write(readings)
        sink.close()
    assert srv.lines() == good
    assert counters.get("plantwatch_points_dropped_total", reason=f"http_{status}") == 9
    assert counters.get("plantwatch_readings_written_total") == 51
    drop_logs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_logs) == 1 and f"http_{status}" in drop_logs[0] and "9 point" in drop_logs[0]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_fatal(status: int) -> None:
    counters = Counters()
    with scripted(lambda b, n: Reply(status)) as srv:
        sink = _sink(srv.url, counters, sleep=FakeSleep())
        with pytest.raises(SinkAuthError, match="token") as info:
            sink.write(_readings(2))
        sink.close()
    assert isinstance(info.value, SinkFatal)
    assert "bucket" in str(info.value) and "org" in str(info.value)
    assert len(srv.bodies) == 1
    assert counters.total("plantwatch_readings_written_total") == 0


def test_unknown_bucket_is_fatal_not_auth() -> None:
    with scripted(lambda b, n: Reply(404)) as srv:
        sink = _sink(srv.url, Counters(), sleep=FakeSleep())
        with pytest.raises(SinkFatal) as info:
            sink.write(_readings(1))
        sink.close()
    assert not isinstance(info.value, SinkAuthError)
    assert len(srv.bodies) == 1


def test_stop_event_ends_endless_503_with_fake_sleep() -> None:
    counters, stop = Counters(), threading.Event()
    sleep = FakeSleep(lambda n: stop.set() if n == 3 else None)
    with scripted(lambda b, n: Reply(503)) as srv:
        sink = _sink(srv.url, counters, sleep=sleep, stop_event=stop)
        with pytest.raises(SinkStopped):
            sink.write(_readings(2))
        sink.close()
    assert len(srv.bodies) == 3
    assert counters.get("plantwatch_sink_retries_total") == 3
    assert counters.total("plantwatch_readings_written_total") == 0


def test_stop_event_interrupts_a_long_real_backoff() -> None:
    stop = threading.Event()
    with scripted(lambda b, n: Reply(503, {"Retry-After": "30"})) as srv:
        sink = _sink(srv.url, Counters(), stop_event=stop)
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        with pytest.raises(SinkStopped):
            sink.write(_readings(1))
        elapsed = time.monotonic() - started
        sink.close()
    assert 0.25 < elapsed < 3.0
    assert len(srv.bodies) == 1


def test_influx_sink_satisfies_protocol() -> None:
    sink = _sink("http://127.0.0.1:9", Counters())
    assert isinstance(sink, Sink)
    sink.close()


# ------------------------------------------------------------------------------------ SQLite


def test_sqlite_sink_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    counters = Counters()
    readings = _readings(30) + [Reading(asset="x", ts_ns=1, values={"n": math.nan})]
    verdicts = [Verdict(asset="a", ts_ns=i, score=i, probability=0.5, anomaly=i == 2) for i in range(4)]
    sink = SqliteSink(path, counters=counters)
    assert isinstance(sink, Sink)
    sink.write(readings)
    sink.write_verdicts(verdicts)
    # committed before returning: visible to another connection while the sink is still open
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT COUNT(*) FROM readings").fetchone() == (90,)
    sink.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT COUNT(*) FROM readings").fetchone() == (90,)
        row = db.execute(
            "SELECT asset, ts_ns, value, tags_json FROM readings WHERE sensor='flow' ORDER BY ts_ns DESC LIMIT 1"
        ).fetchone()
        assert row == ("asset 2", _ts(2020) + 29 * MS, 29.25, '{"site": "plant"}')
        assert db.execute(
            "SELECT asset, ts_ns, score, probability, anomaly FROM anomaly ORDER BY ts_ns"
        ).fetchall() == [("a", i, float(i), 0.5, int(i == 2)) for i in range(4)]
    finally:
        db.close()
    assert counters.get("plantwatch_readings_written_total") == 30
    assert counters.get("plantwatch_points_dropped_total", reason="non_finite") == 1


def test_sqlite_sink_keeps_one_point_per_series_and_instant_as_influxdb_does(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    with sqlite3.connect(path) as old:  # a file written before the unique indexes, with copies in it
        old.executescript(SQLITE_SCHEMA)
        old.executemany("INSERT INTO readings VALUES ('a', 1, 'flow', ?, '{}')", [(1.0,), (2.0,)])
        old.executemany("INSERT INTO anomaly VALUES ('a', 1, 0.1, ?, 0)", [(0.5,), (0.6,)])
    sink = SqliteSink(path, counters=Counters())
    sink.write([Reading("a", 1, {"flow": 3.0}), Reading("a", 2, {"flow": 4.0})])  # a redelivery, a new one
    sink.write_verdicts([Verdict("a", 1, 0.1, 0.7, False)])  # scored again after a crash
    sink.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT ts_ns, value FROM readings ORDER BY ts_ns").fetchall() == [(1, 3.0), (2, 4.0)]
        assert db.execute("SELECT ts_ns, probability FROM anomaly").fetchall() == [(1, 0.7)]


# ------------------------------------------------------------------ the server fixtures themselves


def test_missing_binary_fails_under_ci_and_skips_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y mosquitto victoria-metrics"):
        require_binary("/nonexistent/mosquitto")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y mosquitto victoria-metrics"):
        require_binary("/nonexistent/mosquitto")


@pytest.mark.integration
def test_mosquitto_restart_keeps_persistent_session(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"

    got: list[bytes] = []
    received = threading.Event()

    def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        received.set()

    def client(port: int, client_id: str = "") -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id)
        c.on_message = on_message  # set before connecting: a queued message arrives right after CONNACK
        c.connect("127.0.0.1", port)
        c.loop_start()
        return c

    with run_mosquitto(tmp_path) as first:
        sub = client(first.port, "keeper")
        sub.subscribe("t/#", qos=1)
        time.sleep(0.2)
        sub.disconnect()
        sub.loop_stop()
        pub = client(first.port)
        pub.publish("t/x", b"kept", qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
    with run_mosquitto(tmp_path, port=first.port) as again:  # same dir + port: persisted state reloads
        sub = client(again.port, "keeper")
        assert received.wait(5)
        sub.disconnect()
        sub.loop_stop()
    assert got == [b"kept"]
