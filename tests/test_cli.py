"""The command line: help texts, the backtest contract, and clear errors for bad input."""

from __future__ import annotations

import csv
import json
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from plantwatch.cli import main
from plantwatch.settings import DEFAULT_CONFIG, SECRET_KEYS, Settings, load_settings


@pytest.mark.parametrize("command", [[], ["run"], ["replay"], ["backtest"], ["demo"], ["config"], ["check"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: plantwatch" in capsys.readouterr().out


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"plantwatch {version('plantwatch')}\n"


def test_config_prints_a_file_that_loads_as_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert printed == DEFAULT_CONFIG.read_text(encoding="utf-8")
    start = tmp_path / "plant.yaml"
    start.write_text(printed, encoding="utf-8")
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "t")
    assert load_settings(start) == Settings()  # the file states the defaults, no more, no less


def test_config_documents_every_key() -> None:
    """Every setting but the secrets (named in the header) is in the file, each key line with a comment."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    keys: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        match = re.match(r"^( *)([a-z_]+):(.*)$", line)
        if match is None:
            continue
        indent, key, rest = match.groups()
        section = key if not indent else section
        keys[f"{section}.{key}" if indent else key] = rest
    expected = set()
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            expected.add(name)
            expected |= {f"{name}.{key}" for key in field.annotation.model_fields}
        else:
            expected.add(name)
    secrets = {f"{section}.{key}" for section, key in SECRET_KEYS}
    assert set(keys) == expected - secrets
    assert [key for key, rest in keys.items() if "#" not in rest] == []
    for section, key in SECRET_KEYS:
        assert f"PLANTWATCH_{section.upper()}__{key.upper()}" in text


def _sensor_log(path: Path, rows: int = 900, fault_from: int = 600, delimiter: str = ";") -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, size=(rows, 4))
    values[fault_from:, 2] += 6.0  # a step on one sensor
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(["datetime", "flow", "pressure", "temp", "current", "anomaly"])
        for i, row in enumerate(values):
            stamp = f"2020-03-09 10:{i // 60 % 60:02d}:{i % 60:02d}" if i < 3600 else "x"
            writer.writerow([stamp, *(f"{v:.6f}" for v in row), 1.0 if i >= fault_from else 0.0])


def _read_scores(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_backtest_writes_the_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.csv"
    _sensor_log(log)
    out = tmp_path / "scores.csv"
    code = main(["backtest", str(log), "--train-rows", "300", "--label-column", "anomaly", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and "recall" in printed and "F1" in printed
    assert "scores lie beyond enter=0.995, so the tail the alarm level" in printed  # 300 rows: ~1.5 of them
    assert "alarm level: probability >= 0.99" in printed and "(derived for 1 false alerts per week)" in printed
    assert "smallest settled shift of each sensor the alarm flags" in printed and "flow +" in printed
    assert "as many rows (--train-rows " in printed and "baseline_rows" not in printed  # the flag, not the key
    assert "labelled segments after row 300: 1 of 1 flagged; first flag a median" in printed
    rows = _read_scores(out)
    assert len(rows) == 900
    assert list(rows[0]) == ["timestamp", "score", "probability", "anomaly", "status"]
    assert rows[0]["timestamp"] == "2020-03-09 10:00:00"  # as in the input, input order
    assert all(r["score"] == r["probability"] == r["anomaly"] == "" for r in rows[:300])  # baseline: not scored
    probabilities = np.array([float(r["probability"]) for r in rows[300:]])
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert {r["anomaly"] for r in rows[300:]} <= {"0", "1"}
    flagged = np.array([r["anomaly"] == "1" for r in rows])
    assert not flagged[:300].any()  # the baseline is never flagged
    assert flagged[620:].mean() > 0.9  # the step fault is found
    assert flagged[300:600].mean() < 0.05  # few false alarms on normal rows


def test_backtest_is_causal(tmp_path: Path) -> None:
    full, cut = tmp_path / "full.csv", tmp_path / "cut.csv"
    _sensor_log(full, delimiter=",")
    lines = full.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[: 1 + 700]))
    main(["backtest", str(full), "--train-rows", "300", "--label-column", "anomaly", "--out", str(tmp_path / "a")])
    main(["backtest", str(cut), "--train-rows", "300", "--label-column", "anomaly", "--out", str(tmp_path / "b")])
    assert _read_scores(tmp_path / "a")[:700] == _read_scores(tmp_path / "b")


def test_backtest_unknown_label_column_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.csv"
    _sensor_log(log)
    code = main(["backtest", str(log), "--train-rows", "300", "--label-column", "nope", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_run_with_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("storage:\n  kind: sqlite\nmqtt:\n  qos: 3\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "mqtt.qos" in capsys.readouterr().err


def test_replay_rejects_a_bad_broker_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.csv"
    _sensor_log(log)
    assert main(["replay", str(log), "--broker", "http://x:1", "--asset", "p"]) == 2
    assert "mqtt://HOST:PORT" in capsys.readouterr().err


def test_backtest_explains_every_anomalous_row(tmp_path: Path) -> None:
    log, out, explained = tmp_path / "log.csv", tmp_path / "scores.csv", tmp_path / "why.jsonl"
    _sensor_log(log)
    args = ["backtest", str(log), "--train-rows", "300", "--label-column", "anomaly", "--out", str(out)]
    assert main([*args, "--explain", str(explained)]) == 0
    rows = _read_scores(out)
    flagged = [r["timestamp"] for r in rows if r["anomaly"] == "1"]
    records = [json.loads(line) for line in explained.read_text().splitlines()]
    assert [r["timestamp"] for r in records] == flagged and flagged
    in_fault = [r for r in records if r["timestamp"] >= "2020-03-09 10:10:20"]  # row 620 on
    assert in_fault and all(r["sensors"][0]["sensor"] == "temp" for r in in_fault)
    assert all(r["sensors"][0]["direction"] == "high" for r in in_fault)
    assert all(r["sensors"][0]["within_expected"] is False for r in in_fault)  # the step leaves its range
    assert all(r["unseen_operating_point"] is False for r in records)  # one sensor: a fault, no new load


def test_backtest_names_the_sensors_it_judges_by_movement_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.csv"
    rng = np.random.default_rng(8)
    n = 900
    temp = 70 + 0.5 * np.sin(np.arange(n) / 50) + rng.normal(0, 0.02, n)  # wanders on its own
    with log.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "flow", "pressure", "temp"])
        for i in range(n):
            writer.writerow([1_583_748_000 + i, f"{rng.normal(32, 0.4):.4f}", f"{rng.normal(1, 0.2):.4f}", temp[i]])
    assert main(["backtest", str(log), "--train-rows", "400", "--out", str(tmp_path / "s.csv")]) == 0
    assert "judged by how they move only: temp" in capsys.readouterr().out


def test_backtest_applies_an_assets_overrides_like_the_live_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.csv"
    _sensor_log(log)
    config = tmp_path / "plant.yaml"
    config.write_text("detector:\n  assets:\n    pump-7: {kind: robust_z, features: [spread]}\n")
    outs = {}
    for name, extra in (("top", []), ("pump", ["--asset", "pump-7"]), ("other", ["--asset", "fan-2"])):
        outs[name] = tmp_path / f"{name}.csv"
        argv = ["backtest", str(log), "--train-rows", "300", "--out", str(outs[name]), "--config", str(config)]
        assert main(argv + extra) == 0
    assert "no 'fan-2' (overrides for: pump-7); using the top-level settings" in capsys.readouterr().err
    scores = {name: [r["score"] for r in _read_scores(path)] for name, path in outs.items()}
    assert scores["other"] == scores["top"] != scores["pump"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["demo", "--rate", "0"], "argument --rate: must be a number above 0, got '0'"),
        (["demo", "--rate", "-5"], "argument --rate: must be a number above 0, got '-5'"),
        (["demo", "--port", "99999"], "argument --port: must be a port from 0 (any free one) to 65535, got '99999'"),
        (["demo", "--port", "-1"], "argument --port: must be a port from 0 (any free one) to 65535, got '-1'"),
    ],
)
def test_demo_refuses_impossible_flag_values_naming_the_flag(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and said in capsys.readouterr().err


def test_replay_refuses_names_the_service_would_refuse_before_publishing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.csv"
    _sensor_log(log, rows=20)
    # port 1: nothing listens; the names are refused before any connection is tried
    assert main(["replay", str(log), "--broker", "mqtt://127.0.0.1:1", "--asset", 'bad"name']) == 2
    assert "--asset 'bad\"name' contains a double quote" in capsys.readouterr().err
    # with --topic the service reads the asset from the topic, not from --asset
    topic = ["--broker", "mqtt://127.0.0.1:1", "--asset", "p1", "--topic", 'plant/bad"name']
    assert main(["replay", str(log), *topic]) == 2
    assert "--topic 'plant/bad\"name': 'bad\"name' contains a double quote" in capsys.readouterr().err
    quoted = tmp_path / "quoted.csv"
    quoted.write_text(log.read_text().replace("pressure", 'pres"sure', 1))
    assert main(["replay", str(quoted), "--broker", "mqtt://127.0.0.1:1", "--asset", "p1"]) == 2
    assert "column 'pres\"sure' contains a double quote" in capsys.readouterr().err


def test_a_plot_must_be_a_png_and_is_refused_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.csv"
    _sensor_log(log)
    for name in ("x.txt", "noext"):
        argv = ["backtest", str(log), "--train-rows", "300", "--out", str(tmp_path / "o.csv")]
        assert main([*argv, "--plot", str(tmp_path / name)]) == 2
        assert f"--plot {tmp_path / name}: give a file name ending in .png" in capsys.readouterr().err
        assert not (tmp_path / "o.csv").exists()


def test_a_config_that_is_a_folder_is_said_to_be_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path)]) == 2
    assert f"plantwatch: {tmp_path}: is a folder, not a config file" in capsys.readouterr().err


def test_a_file_error_names_the_flag_that_gave_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What only trying can tell (/proc looks writable to root): the write fails after the checks.
    import plantwatch.offline.backtest as backtest

    def refused(path: str | Path, result: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(backtest, "write_scores_csv", refused)
    log = tmp_path / "log.csv"
    _sensor_log(log)
    out = tmp_path / "o.csv"
    assert main(["backtest", str(log), "--train-rows", "300", "--out", str(out)]) == 2
    assert f"plantwatch: --out {out}: permission denied" in capsys.readouterr().err
    assert main(["backtest", str(log), "--train-rows", "300", f"--out={out}"]) == 2  # the = form too
    assert f"plantwatch: --out {out}: permission denied" in capsys.readouterr().err
    # a flag whose value is a folder above the file does not take the blame from the file's own flag
    monkeypatch.chdir(tmp_path)
    argv = ["backtest", str(log), "--train-rows", "300", "--asset", "pump-7", "--out", "pump-7/o.csv"]
    (tmp_path / "pump-7").mkdir()
    assert main(argv) == 2
    assert "plantwatch: --out pump-7/o.csv: permission denied" in capsys.readouterr().err


def test_backtest_says_which_skipped_rows_lay_out_of_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.csv"
    _sensor_log(log)
    lines = log.read_text().splitlines(keepends=True)
    lines[700], lines[701] = lines[701], lines[700]  # one row stamped a second before the one above it
    log.write_text("".join(lines))
    assert main(["backtest", str(log), "--train-rows", "300", "--out", str(tmp_path / "o.csv")]) == 0
    assert "1 skipped: 1 stamped before an earlier row, sort the log by time)" in capsys.readouterr().out
