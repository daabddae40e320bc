"""Sensor log parsing: delimiters, line ends, time formats, label columns, errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from ingest.logfile import parse_times_ns, read_sensor_log, sniff_delimiter
from plantwatch.maintenance.rul_files import read_fleet_csv

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
    with pytest.raises(ValueError, match="line 3: cannot parse time 'yesterday'"):
        read_sensor_log(write(tmp_path, "time,a\n2020-01-01,1\nyesterday,2\n"))
    # the file's line, as for a row of the wrong width: blank lines count, as an editor counts them
    with pytest.raises(ValueError, match="line 5: cannot parse time 'yesterday'"):
        read_sensor_log(write(tmp_path, "time,a\n2020-01-01,1\n\n\nyesterday,2\n"))
    # a quoted cell with a line break: the row after it starts on line 4, and so does the next error
    with pytest.raises(ValueError, match="line 4: cannot parse time 'yesterday'"):
        read_sensor_log(write(tmp_path, 'time,a,note\n2020-01-01,1,"x\ny"\nyesterday,2,"p\nq"\n'))
    with pytest.raises(ValueError, match="line 4: 2 cells, header has 3"):
        read_sensor_log(write(tmp_path, 'time,a,note\n2020-01-01,1,"x\ny"\n2020-01-02,2\n'))
    with pytest.raises(ValueError, match="duplicate column names"):
        read_sensor_log(write(tmp_path, "time,a,a\n1,2,3\n"))
    # Epoch stamps int64 nanoseconds cannot hold (numpy would wrap them into wrong dates silently).
    for stamp in ("50000000000", "1e30", "-50000000000", "1000000000000000019884624838656"):
        with pytest.raises(ValueError, match=f"line 3: time '{stamp}' is outside the years 1677-2262"):
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


# -- newcomer mistakes: each is one line naming the file, or handled -----------------------------


def assert_refused(path: Path, match: str, **kwargs: object) -> str:
    with pytest.raises(ValueError, match=match) as err:
        read_sensor_log(path, **kwargs)  # type: ignore[arg-type]
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_a_binary_file_is_not_a_utf8_csv(tmp_path: Path) -> None:
    path = tmp_path / "ls"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    assert_refused(path, r"not a UTF-8 CSV text \(byte 0x80 at offset 136\)")  # the NUL bytes are valid UTF-8


def test_text_in_another_encoding_says_where_and_what_to_do(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("\ufefftime;temp °C\n1;2\n".encode("utf-8")[:3] + "time;temp °C\n1;2\n".encode("latin-1"))
    assert_refused(latin1, r"byte 0xb0 at offset 13\); if it is text in another encoding, save it as UTF-8")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("time,a\n1,2\n".encode("utf-16"))
    assert_refused(utf16, "UTF-16 text, not a UTF-8 CSV")


def test_nul_bytes_are_not_csv_text(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "time,a\n1,2\x00\n"), "NUL bytes")


@pytest.mark.parametrize("text", ["", "\n\n  \r\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert_refused(write(tmp_path, text), "empty file; expected a header line")


def test_header_problems(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "\ntime,a\n1,2\n"), "the first line is empty; it must be the header")
    assert_refused(write(tmp_path, "time a b\n1 2 3\n"), r"one column 'time a b'; .* separated by ',', ';' or a tab")
    assert_refused(write(tmp_path, "time,a,b,\n1,2,3,\n"), r"column\(s\) \[4\] have no name")
    assert_refused(write(tmp_path, "time,a,a\n1,2,3\n"), r"duplicate column names \['a'\]")
    assert_refused(write(tmp_path, "time,anomaly\n1,0\n"), r"no sensor columns; columns are \['time', 'anomaly'\]")


def test_missing_time_column_names_the_flag_and_the_columns(tmp_path: Path) -> None:
    message = assert_refused(write(tmp_path, "when,a\n1,2\n"), "no time column found")
    assert "--time-column" in message and "['when', 'a']" in message


def test_tab_separated_log(tmp_path: Path) -> None:
    log = read_sensor_log(write(tmp_path, "time\ta\tb\n1583748873\t1.5\t2\n"))
    assert log.sensors == ("a", "b") and log.values.tolist() == [[1.5, 2.0]]
    assert log.timestamps_ns.tolist() == [T0]


def test_bom_crlf_and_semicolons_together(tmp_path: Path) -> None:
    # The BOM would otherwise stick to the first name and hide the time column.
    log = read_sensor_log(write(tmp_path, "\ufeffdatetime;a\r\n2020-03-09 10:14:33;1\r\n\r\n"))
    assert log.sensors == ("a",) and log.timestamps_ns.tolist() == [T0]


def test_cr_only_line_ends(tmp_path: Path) -> None:
    log = read_sensor_log(write(tmp_path, 'time,a\r1583748873,"1"\r1583748874,2\r'))
    assert log.values.tolist() == [[1.0], [2.0]]


def test_label_like_columns_are_left_out_unless_declared_or_included(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a,Anomaly,changepoint,LABEL,is_anomaly,labels\n1,2,0,0,0,0,5\n")
    log = read_sensor_log(path)
    assert log.sensors == ("a", "labels") and log.labels == {}
    assert log.left_out == ("Anomaly", "changepoint", "LABEL", "is_anomaly")
    log = read_sensor_log(path, label_columns=["Anomaly"], include=["changepoint"])
    assert log.sensors == ("a", "changepoint", "labels") and set(log.labels) == {"Anomaly"}
    assert log.left_out == ("LABEL", "is_anomaly")
    assert read_sensor_log(path, ignore_columns=["LABEL"]).left_out == ("Anomaly", "changepoint", "is_anomaly")
    assert_refused(
        path, r"\['Anomaly'\] cannot be left out and included", label_columns=["Anomaly"], include=["Anomaly"]
    )
    assert_refused(path, r"column\(s\) to include \['nope'\] not found; columns are .* \(--include\)", include=["nope"])


def test_text_in_a_label_column_is_refused_with_line_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "time,a,anomaly\n1,2,0\n\n2,3,ok\n3,4,1\n")  # the blank line still counts
    assert_refused(
        path, r"line 4: label column 'anomaly' holds 'ok'; label cells must be numbers", label_columns=["anomaly"]
    )
    # Empty label cells are no label (NaN, read as normal); columns only left out are never read.
    log = read_sensor_log(write(tmp_path, "time,a,anomaly\n1,2,\n2,3,1\n"), label_columns=["anomaly"])
    assert math.isnan(log.labels["anomaly"][0]) and log.labels["anomaly"][1] == 1.0
    assert read_sensor_log(path, ignore_columns=["anomaly"]).sensors == ("a",)


def test_a_sensor_column_of_text_is_named(tmp_path: Path) -> None:
    log = read_sensor_log(write(tmp_path, "time,a,status,c\n1,2,running,\n2,3,stopped,\n"))
    assert log.sensors == ("a", "status", "c") and np.isnan(log.values[:, 1:]).all()
    assert log.sensors_without_numbers() == ["status", "c"]
    assert read_sensor_log(write(tmp_path, "time,a\n")).sensors_without_numbers() == []


def test_ragged_row_line_number_counts_blank_lines(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "time,a,b\n\n1,2,3\n2,3\n"), "line 4: 2 cells, header has 3")


@pytest.mark.parametrize(
    "stamp", ["2300-01-01 00:00:00", "1500-01-01", "2262-04-11T23:47:16.9", "2300-01-01T00:00:00+01:00"]
)
def test_iso_times_outside_int64_are_refused_not_wrapped(tmp_path: Path, stamp: str) -> None:
    # numpy's datetime64[ns] parser wraps these into wrong times without a word.
    assert_refused(
        write(tmp_path, f"time,a\n2020-01-01,1\n{stamp},2\n"), re.escape(f"line 3: time '{stamp}' is outside")
    )


def test_zoned_times_keep_nanoseconds_as_naive_ones_do(tmp_path: Path) -> None:
    log = read_sensor_log(
        write(tmp_path, "time,a\n2020-03-09T10:14:33.000000007Z,1\n2020-03-09 10:14:33.000000008,2\n")
    )
    assert log.timestamps_ns.tolist() == [T0 + 7, T0 + 8]


@pytest.mark.parametrize("delim", [",", ";", "\t"])
def test_fleet_logs_sniff_their_delimiter_the_same_way(tmp_path: Path, delim: str) -> None:
    rows = [["unit", "cycle", "s0"]] + [[unit, str(cycle), f"{cycle * 0.5}"] for unit in "ab" for cycle in (1, 2, 3)]
    path = write(tmp_path, "".join(delim.join(row) + "\n" for row in rows))
    fleet = read_fleet_csv(path, "unit", "cycle")
    assert fleet.assets == ["a", "b"] and fleet.sensor_columns == ["s0"]
