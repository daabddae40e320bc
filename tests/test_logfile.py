"""Sensor log parsing: delimiters, line ends, time formats, label columns, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ingest.logfile import parse_times_ns, read_sensor_log, sniff_delimiter

T0 = 1_583_748_873_000_000_000  # 2020-03-09 10:14:33 UTC


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_semicolon_crlf_and_labels_excluded(tmp_path: Path) -> None:
    text = (
        "datetime;Current;Pressure;anomaly;changepoint\r\n"
        "2020-03-09 10:14:33;1.33;0.05;0.0;0.0\r\n"
        "2020-03-09 10:14:34;1.35;0.38;1.0;0.0\r\n"
    )
    log = read_sensor_log(write(tmp_path, text), label_columns=["anomaly", "changepoint"])
    assert log.sensors == ("Current", "Pressure")
    assert log.values.tolist() == [[1.33, 0.05], [1.35, 0.38]]
    assert log.timestamps_ns.tolist() == [T0, T0 + 1_000_000_000]
    assert log.timestamp_text == ["2020-03-09 10:14:33", "2020-03-09 10:14:34"]
    assert log.labels["anomaly"].tolist() == [0.0, 1.0] and set(log.labels) == {"anomaly", "changepoint"}


def test_comma_iso_with_offset_bom_and_non_numeric_cells(tmp_path: Path) -> None:
    text = (
        "\ufeffTimeStamp,a,b\n"
        "2020-03-09T11:14:33+01:00,1,x\n"
        "2020-03-09T10:14:33.5Z,,2.5\n"
        "\n"  # blank lines are ignored
    )
    log = read_sensor_log(write(tmp_path, text))
    assert log.sensors == ("a", "b")
    assert log.timestamps_ns.tolist() == [T0, T0 + 500_000_000]
    assert math.isnan(log.values[0, 1]) and math.isnan(log.values[1, 0])
    assert log.values[1, 1] == 2.5 and log.values.dtype == np.float64


def test_explicit_time_column_and_delimiter(tmp_path: Path) -> None:
    text = "when|time|x\n1583748873|7|1.0\n1583748874|8|2.0\n"
    log = read_sensor_log(write(tmp_path, text), time_column="when", delimiter="|")
    assert log.timestamps_ns.tolist() == [T0, T0 + 1_000_000_000]
    assert log.sensors == ("time", "x")  # a non-time 'time' column is just a sensor here


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["1583748873", "1583748873.25"], [T0, T0 + 250_000_000]),
        (["1583748873000", "1583748873001"], [T0, T0 + 1_000_000]),
        (["1583748873000000"], [T0]),
        ([str(T0 + 7)], [T0 + 7]),  # nanoseconds stay exact
    ],
)
def test_epoch_units_from_magnitude(texts: list[str], expected: list[int]) -> None:
    assert parse_times_ns(texts).tolist() == expected


def test_sniff_delimiter() -> None:
    assert sniff_delimiter("a;b;c,d\n") == ";"
    assert sniff_delimiter("a,b,c\n") == ","
    assert sniff_delimiter("only\n") == ","


def test_missing_time_column_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no time column found.*'a', 'b'"):
        read_sensor_log(write(tmp_path, "a,b\n1,2\n"))
    with pytest.raises(ValueError, match="time column 'ts' not found"):
        read_sensor_log(write(tmp_path, "time,b\n1,2\n"), time_column="ts")


def test_unknown_label_column_names_the_available_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a,anomaly\n1,2,0\n")
    with pytest.raises(ValueError, match=r"\['nope'\] not found; columns are \['time', 'a', 'anomaly'\]"):
        read_sensor_log(path, label_columns=["nope"])


def test_bad_rows_and_times_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line 3: 2 cells, header has 3"):
        read_sensor_log(write(tmp_path, "time,a,b\n1,2,3\n2,3\n"))
    with pytest.raises(ValueError, match="cannot parse time 'yesterday'"):
        read_sensor_log(write(tmp_path, "time,a\n2020-01-01,1\nyesterday,2\n"))
    with pytest.raises(ValueError, match="duplicate column names"):
        read_sensor_log(write(tmp_path, "time,a,a\n1,2,3\n"))
    # Epoch stamps int64 nanoseconds cannot hold (numpy would wrap them into wrong dates silently).
    for stamp in ("50000000000", "1e30", "-50000000000", "1000000000000000019884624838656"):
        with pytest.raises(ValueError, match=f"data row 2: time '{stamp}' is outside the years 1677-2262"):
            read_sensor_log(write(tmp_path, f"time,a\n1772352000,1\n{stamp},2\n"))


def test_header_only_gives_empty_arrays(tmp_path: Path) -> None:
    log = read_sensor_log(write(tmp_path, "time,a,b\n"))
    assert log.values.shape == (0, 2) and log.timestamps_ns.shape == (0,)


def test_large_file_is_fast_enough(tmp_path: Path) -> None:
    n = 20_000
    rng = np.random.default_rng(0)
    values = rng.standard_normal((n, 8))
    lines = ["timestamp," + ",".join(f"s{i}" for i in range(8)) + ",label"]
    lines += [
        f"2021-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}," + ",".join(f"{v:.5f}" for v in row) + ",0"
        for i, row in enumerate(values)
    ]
    log = read_sensor_log(write(tmp_path, "\n".join(lines) + "\n"), label_columns=("label",))
    assert log.values.shape == (n, 8)
    np.testing.assert_allclose(log.values, values, atol=1e-5)


def test_fast_and_general_parsers_agree(tmp_path: Path) -> None:
    rows = [f"2021-01-01 00:00:{i:02d};{i * 0.5};{-i};{i % 2}" for i in range(30)]
    clean = "time;a;b;label\n" + "\n".join(rows) + "\n"
    quoted = clean.replace("00:00:07;", '"00:00:07";').replace('2021-01-01 "', '"2021-01-01 ')
    assert '"' in quoted  # forces the csv-module path
    fast = read_sensor_log(write(tmp_path, clean, "a.csv"), label_columns=["label"])
    slow = read_sensor_log(write(tmp_path, quoted, "b.csv"), label_columns=["label"])
    assert fast.timestamp_text == slow.timestamp_text
    np.testing.assert_array_equal(fast.timestamps_ns, slow.timestamps_ns)
    np.testing.assert_array_equal(fast.values, slow.values)
    np.testing.assert_array_equal(fast.labels["label"], slow.labels["label"])


def test_row_longer_than_header_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line 3: 4 cells, header has 3"):
        read_sensor_log(write(tmp_path, "time,a,b\n1,2,3\n2,3,4,5\n"))
