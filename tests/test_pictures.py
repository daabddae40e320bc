"""Backtest pictures (`plantwatch backtest --plot/--html`): drawn from a log with a labelled fault."""

from __future__ import annotations

import base64
import re
import struct
from pathlib import Path

import pytest
from test_backtest import FAULT, TRAIN, make_log

from ingest.logfile import read_sensor_log
from plantwatch.cli import main
from plantwatch.offline.backtest import run_backtest
from plantwatch.offline.pictures import alert_spans


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_alerts_of_a_backtest_are_its_runs_of_anomalous_rows_with_their_top_sensor(tmp_path: Path) -> None:
    log = read_sensor_log(make_log(tmp_path), label_columns=["anomaly"])
    result = run_backtest(log, train_rows=TRAIN, explain=True)
    spans = alert_spans(result)
    at_fault = [s for s in spans if s.start < FAULT[1] and s.stop > FAULT[0]]
    assert at_fault and at_fault[0].why is not None
    assert at_fault[0].why.contributions[0].sensor == "s2"  # the stepped sensor, named first
    assert at_fault[0].sensors_text().startswith("s2 high")
    assert sum(s.stop - s.start for s in spans) == int(result.anomaly.sum())
    assert [s.number for s in spans] == list(range(1, len(spans) + 1))


def test_backtest_draws_the_png_and_the_html_page(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    png, page = tmp_path / "backtest.png", tmp_path / "backtest.html"
    argv = ["backtest", str(log), "--train-rows", str(TRAIN), "--out", str(tmp_path / "scores.csv")]
    assert main([*argv, "--label-column", "anomaly", "--plot", str(png), "--html", str(page)]) == 0
    width, height = _png_size(png.read_bytes())
    assert width >= 1200 and height >= 1000  # 8 sensor panels and the probability panel
    text = page.read_text()
    assert "<td>s2 high (" in text  # the alert table names the stepped sensor
    assert "<p>alarm level: probability &ge; 0.99" in text
    (image,) = re.findall(r'src="data:image/png;base64,([^"]+)"', text)  # the picture, inside the page
    assert _png_size(base64.b64decode(image)) == (width, height)
    assert "http" not in text.replace("http-equiv", "")  # nothing to fetch


def test_a_plot_that_cannot_be_written_is_refused_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = make_log(tmp_path)
    missing = tmp_path / "no-such-folder" / "backtest.png"
    argv = [
        "backtest",
        str(log),
        "--train-rows",
        str(TRAIN),
        "--out",
        str(tmp_path / "scores.csv"),
        "--plot",
        str(missing),
    ]
    assert main(argv) == 2
    assert "--plot" in capsys.readouterr().err
    assert not (tmp_path / "scores.csv").exists()


def test_an_alert_caption_names_the_view_of_the_sensor_unless_it_is_its_reading_or_level() -> None:
    from detector.types import Contribution, Explanation
    from plantwatch.offline.pictures import AlertSpan

    dipped = Contribution("vibration", 0.77, "high", 0.0056, 0.0006, 0.0018, feature="spread")
    level = Contribution("flow", 0.2, "low", 120.0, 124.0, 128.0, feature="level")
    span = AlertSpan(1, 10, 20, 0.99999, Explanation((dipped, level)))
    # A sharp dip raises the spread: "vibration high" alone would send the reader looking for a high reading.
    assert span.sensors_text() == "vibration spread high (77 %), flow low (20 %)"


def test_probabilities_in_the_alert_table_keep_their_nines() -> None:
    from plantwatch.offline.pictures import probability_text

    # 1.000000 for a peak of 0.9999998 against a level of 0.9999871 hid the digits that matter
    assert probability_text(0.9999998) == "0.9999998"
    assert probability_text(0.9999898) == "0.9999898"  # rounding to the first digit would carry: 0.999990
    assert probability_text(0.995) == "0.995" and probability_text(0.123456789) == "0.123457"
    assert probability_text(0.99998999) == "0.9999899"  # not rounded up into a fifth nine
