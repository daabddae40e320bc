"""Bad command lines: one `plantwatch:` line naming the flag or argument and the path, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantwatch.cli import main, os_error_line


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    path.write_text("time,a,b\n" + "".join(f"{1_600_000_000 + i},{i % 7},{i % 5}\n" for i in range(200)))
    return path


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["backtest", "{tmp}", "--train-rows", "100", "--out", "{tmp}/o.csv"],
            "LOG.csv {tmp}: is a folder, not a file",
        ),
        (
            ["backtest", "{tmp}/nope.csv", "--train-rows", "100", "--out", "{tmp}/o.csv"],
            "LOG.csv {tmp}/nope.csv: no such file",
        ),
        (
            ["replay", "{tmp}", "--broker", "mqtt://127.0.0.1:1", "--asset", "p"],
            "LOG.csv {tmp}: is a folder, not a file",
        ),
        (
            ["rul", "fit", "{tmp}", "--asset-column", "u", "--time-column", "t", "--out", "{tmp}/m"],
            "TRAIN.csv {tmp}: is a folder, not a file",
        ),
        (
            [
                "rul",
                "predict",
                "{tmp}/nope.csv",
                "--model",
                "{tmp}",
                "--asset-column",
                "u",
                "--time-column",
                "t",
                "--out",
                "{tmp}/p.csv",
            ],
            "TEST.csv {tmp}/nope.csv: no such file",
        ),
        (["backtest", "{log}", "--train-rows", "100", "--out", "{tmp}"], "--out {tmp}: is a folder; give a file name"),
        (
            ["backtest", "{log}", "--train-rows", "100", "--out", "{tmp}/no/dir/o.csv"],
            "--out {tmp}/no/dir/o.csv: no such folder {tmp}/no/dir",
        ),
        (
            ["backtest", "{log}", "--train-rows", "100", "--out", "{tmp}/o.csv", "--explain", "{tmp}/no/w.jsonl"],
            "--explain {tmp}/no/w.jsonl: no such folder {tmp}/no",
        ),
        (
            ["backtest", "{log}", "--train-rows", "100", "--out", "{log}/o.csv"],
            "--out {log}/o.csv: {log} is a file, not a folder",
        ),
        (
            ["rul", "fit", "{log}", "--asset-column", "u", "--time-column", "t", "--out", "{log}"],
            "--out {log}: is a file, not a folder",
        ),
    ],
    ids=[
        "backtest-log-folder",
        "backtest-log-missing",
        "replay-log-folder",
        "rul-fit-train-folder",
        "rul-predict-test-missing",
        "backtest-out-folder",
        "backtest-out-no-folder",
        "backtest-explain-no-folder",
        "backtest-out-under-a-file",
        "rul-fit-out-a-file",
    ],
)
def test_a_path_that_cannot_be_used_names_its_flag(
    argv: list[str], line: str, tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill = {"tmp": tmp_path, "log": log}
    assert _error([arg.format(**fill) for arg in argv], capsys) == f"plantwatch: {line.format(**fill)}"
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "m").exists()  # refused before any work


def test_os_errors_the_commands_do_not_name_still_name_the_file(tmp_path: Path) -> None:
    """The fallback in main: `/nope.csv: no such file`, not `[Errno 2] No such file or directory: '/nope.csv'`."""
    cases = {
        tmp_path / "nope.csv": "no such file",
        tmp_path / "no" / "x.csv": f"no such folder {tmp_path / 'no'}",
        tmp_path: "is a folder, not a file",
    }
    for path, reason in cases.items():
        with pytest.raises(OSError) as failed:
            path.open(encoding="utf-8")
        assert os_error_line(failed.value) == f"{path}: {reason}"
    assert os_error_line(ConnectionRefusedError(111, "Connection refused")) == "Connection refused"


def test_backtest_asks_for_no_influxdb_token_even_when_the_environment_chooses_influxdb(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment outranks the file and any override: only load_settings(offline=True) leaves the token out.
    monkeypatch.setenv("PLANTWATCH_STORAGE__KIND", "influxdb")
    monkeypatch.delenv("PLANTWATCH_INFLUX__TOKEN", raising=False)
    assert main(["backtest", str(log), "--train-rows", "100", "--out", str(tmp_path / "o.csv")]) == 0, (
        capsys.readouterr()
    )


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("{tmp}/nosuch", "no such folder; write one with `plantwatch rul fit TRAIN.csv --out DIR ...`"),
        ("{log}", "is a file, not a model folder written by `plantwatch rul fit TRAIN.csv --out DIR ...`"),
        ("{tmp}", "has no model.json; is it a folder written by `plantwatch rul fit TRAIN.csv --out DIR ...`?"),
    ],
    ids=["missing", "a-file", "not-a-model"],
)
def test_rul_predict_names_the_model_flag(
    model: str, problem: str, tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = model.format(tmp=tmp_path, log=log)
    argv = ["rul", "predict", str(log), "--model", model, "--asset-column", "a", "--time-column", "time"]
    assert _error([*argv, "--out", str(tmp_path / "p.csv")], capsys) == f"plantwatch: --model {model}: {problem}"


def test_rul_fit_help_describes_its_log_and_its_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rul", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "TRAIN.csv run-to-failure log: one row per asset per time step" in text
    assert "--out DIR folder to write the model to" in text


def test_backtest_asset_without_config_says_there_are_no_overrides(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backtest", str(log), "--train-rows", "100", "--out", str(tmp_path / "o.csv"), "--asset", "pump-7"]
    assert main(argv) == 0  # scored with the default settings, as the service would score pump-7
    assert capsys.readouterr().err.splitlines() == [
        "note: --asset pump-7: there are no per-asset overrides without --config FILE (its detector.assets); "
        "using the embedded default's detector settings"
    ]
