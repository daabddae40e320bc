"""The counters behind GET /metrics: declared names only, one registry per service, Prometheus text."""

from __future__ import annotations

import threading

import pytest

from telemetry.counters import HELP, LABELS, Counters


def test_counts_by_name_and_label_and_sums_the_labels() -> None:
    counters = Counters()
    counters.inc("plantwatch_readings_written_total", 120)
    counters.inc("plantwatch_messages_rejected_total", reason="malformed_json")
    counters.inc("plantwatch_messages_rejected_total", 2, reason="non_numeric")
    assert counters.get("plantwatch_readings_written_total") == 120
    assert counters.get("plantwatch_messages_rejected_total", reason="non_numeric") == 2
    assert counters.get("plantwatch_messages_rejected_total", reason="never_seen") == 0
    assert counters.total("plantwatch_messages_rejected_total") == 3


def test_an_undeclared_name_fails_where_it_is_counted() -> None:
    counters = Counters()
    with pytest.raises(KeyError, match="plantwatch_readings_writen_total"):
        counters.inc("plantwatch_readings_writen_total")
    with pytest.raises(KeyError):
        counters.get("plantwatch_readings_writen_total")


def test_two_services_in_one_process_do_not_share_counts() -> None:
    first, second = Counters(), Counters()
    first.inc("plantwatch_alerts_opened_total")
    assert first.get("plantwatch_alerts_opened_total") == 1
    assert second.get("plantwatch_alerts_opened_total") == 0


def test_render_is_prometheus_text_with_every_declared_counter_and_no_created_samples() -> None:
    counters = Counters()
    counters.inc("plantwatch_points_dropped_total", reason='a "quoted"\nreason')
    text = counters.render()
    for name, help_text in HELP.items():
        assert f"# HELP {name} {help_text}\n# TYPE {name} counter\n" in text
        if name not in LABELS:  # an unlabelled counter shows 0 before its first count
            assert f"\n{name} 0.0\n" in text
    assert 'plantwatch_points_dropped_total{reason="a \\"quoted\\"\\nreason"} 1.0\n' in text
    assert "_created" not in text


def test_increments_from_many_threads_are_all_counted() -> None:
    counters = Counters()

    def count() -> None:
        for _ in range(5000):
            counters.inc("plantwatch_messages_received_total")

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.get("plantwatch_messages_received_total") == 20_000
