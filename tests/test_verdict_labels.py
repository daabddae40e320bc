"""Operators' verdicts exported with `plantwatch alerts labels` and scored against by `plantwatch backtest --labels`."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from alerts.model import Alert, AlertAction
from alerts.store import SqliteAlertStore
from plantwatch.cli import main as cli_main

S = 1_000_000_000
T0 = 1_714_564_800 * S


def at(row: int) -> int:
    return T0 + row * S


def stored_verdicts(path: Path) -> SqliteAlertStore:
    store = SqliteAlertStore(path)
    marks = [
        ("pump-1", 600, 700, ["marked_true_fault"]),
        ("pump-1", 400, 420, ["marked_true_fault", "marked_false_alarm"]),
    ]
    marks += [("fan-2", 100, 110, ["marked_known_cause"]), ("pump-1", 300, 305, [])]  # the last: no verdict
    for asset, start, end, actions in marks:
        alert = store.insert(Alert.opened(asset, "anomaly", at(start), "warning", 3.0, 0.99, ()))
        store.update(dataclasses.replace(alert, last_anomalous_at_ns=at(end)))
        for n, action in enumerate(actions):
            store.act(AlertAction(alert.id or 0, n, "shift-a", action))
    return store


def test_verdicts_become_labels_a_backtest_scores_against(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stored_verdicts(tmp_path / "alerts.db").close()
    config = tmp_path / "plantwatch.yaml"
    config.write_text(f"alerts: {{store_url: 'sqlite:///{tmp_path / 'alerts.db'}'}}\n")
    labels = tmp_path / "labels.csv"
    assert cli_main(["alerts", "labels", "--config", str(config), "--out", str(labels)]) == 0
    assert (
        "wrote 3 alerts with a verdict (1 false_alarm, 1 known_cause, 1 true_fault) of 2 assets"
        in capsys.readouterr().out
    )
    rows = list(csv.reader(labels.open()))
    assert rows[0] == ["asset", "verdict", "start", "end", "alert_id"]
    assert [r[:4] for r in rows[1:]] == [
        ["fan-2", "known_cause", "2024-05-01T12:01:40.000000Z", "2024-05-01T12:01:50.000000Z"],
        ["pump-1", "false_alarm", "2024-05-01T12:06:40.000000Z", "2024-05-01T12:07:00.000000Z"],  # the latest verdict
        ["pump-1", "true_fault", "2024-05-01T12:10:00.000000Z", "2024-05-01T12:11:40.000000Z"],
    ]

    log = tmp_path / "pump-1.csv"
    rng = np.random.default_rng(4)
    values = rng.normal(size=(800, 3))
    values[600:701, 1] += 8.0  # the fault the operators confirmed
    lines = ["timestamp,a,b,c"] + [
        f"{(T0 + i * S) / S:.0f}," + ",".join(f"{v:.5f}" for v in row) for i, row in enumerate(values)
    ]
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.csv"
    argv = ["backtest", str(log), "--train-rows", "300", "--out", str(out), "--labels", str(labels)]
    assert cli_main(argv) == 2  # two assets in the file: which one is the log's?
    assert "--labels: " in capsys.readouterr().err
    assert cli_main([*argv, "--asset", "pump-1"]) == 0
    said = capsys.readouterr().out
    assert "labels from" in said and "1 false_alarm, 1 true_fault alerts of pump-1" in said
    assert "label = any of operators' true_fault" in said
    recall = float(said.split("recall ")[1].split()[0])
    assert recall > 0.8  # the fault's rows are labelled, and a step of 8 noise widths is flagged


def test_a_labels_file_that_is_not_one_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("asset,verdict,start,end,alert_id\npump-1,broken,2024-05-01T12:00:00Z,2024-05-01T12:01:00Z,1\n")
    log = tmp_path / "log.csv"
    log.write_text("timestamp,a\n" + "".join(f"{i},{i % 3}\n" for i in range(50)))
    argv = ["backtest", str(log), "--train-rows", "20", "--out", str(tmp_path / "s.csv"), "--labels", str(bad)]
    assert cli_main(argv) == 2
    assert "--labels: " in (err := capsys.readouterr().err) and "line 2: verdict 'broken'" in err


def test_labels_from_a_store_that_is_not_there_are_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["alerts", "labels", "--out", "labels.csv"]) == 2
    assert "no alert store at plantwatch-alerts.db" in capsys.readouterr().err
    assert not (tmp_path / "plantwatch-alerts.db").exists()
