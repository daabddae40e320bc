"""Alarm rule: hysteresis, min_duration, exit_duration, suppress_rows, state round trip, speed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.alarm import HysteresisAlarm

# -- HysteresisAlarm ------------------------------------------------------------------------


def test_alarm_needs_min_duration_consecutive_rows() -> None:
    alarm = HysteresisAlarm(enter=0.99, exit=0.95, min_duration=3)
    seq = [0.995, 0.995, 0.5, 0.995, 0.995, 0.995, 0.995]
    assert alarm.run(np.array(seq)).tolist() == [False, False, False, False, False, True, True]


def test_alarm_hysteresis_holds_between_exit_and_enter() -> None:
    alarm = HysteresisAlarm(enter=0.99, exit=0.95, min_duration=1)
    seq = [0.991, 0.97, 0.96, 0.95, 0.949, 0.97, 0.99]
    # 0.95 is not < exit, so still on; 0.949 clears; 0.97 does not re-enter; 0.99 does.
    assert alarm.run(seq).tolist() == [True, True, True, True, False, False, True]


def test_alarm_run_equals_update_loop_and_nan_changes_nothing() -> None:
    p = np.random.default_rng(3).uniform(0.9, 1.0, 300)
    p[::17] = np.nan
    a, b = HysteresisAlarm(min_duration=2), HysteresisAlarm(min_duration=2)
    assert a.run(p).tolist() == [b.update(x) for x in p.tolist()]
    alarm = HysteresisAlarm(min_duration=1)
    assert alarm.update(1.0) and alarm.update(math.nan)  # NaN does not clear


def test_alarm_rejects_inverted_thresholds() -> None:
    with pytest.raises(ValueError, match="exit"):
        HysteresisAlarm(enter=0.9, exit=0.95)


def test_alarm_defaults_keep_the_original_rule() -> None:
    a = HysteresisAlarm()
    assert a.get_params() == {"enter": 0.99, "exit": 0.95, "min_duration": 3, "exit_duration": 1, "suppress_rows": 0}


def test_alarm_exit_duration_needs_consecutive_quiet_rows() -> None:
    alarm = HysteresisAlarm(enter=0.99, exit=0.95, min_duration=1, exit_duration=3)
    seq = [0.995, 0.5, 0.5, 0.97, 0.5, 0.5, math.nan, 0.5, 0.5, 0.5, 0.5]
    # One row >= exit resets the quiet run; NaN breaks it too; the third consecutive quiet row clears.
    assert alarm.run(seq).tolist() == [True, True, True, True, True, True, True, True, True, False, False]


def test_alarm_suppress_rows_holds_off_a_new_alarm() -> None:
    alarm = HysteresisAlarm(enter=0.99, exit=0.95, min_duration=2, suppress_rows=3)
    hot = 0.999
    seq = [hot, hot, 0.1, hot, hot, hot, hot, hot]
    # rows 0-1 raise, row 2 clears; rows 3-5 are suppressed (and do not count); 6-7 are a new run.
    assert alarm.run(seq).tolist() == [False, True, False, False, False, False, False, True]
    no_suppress = HysteresisAlarm(enter=0.99, exit=0.95, min_duration=2)
    assert no_suppress.run(seq).tolist() == [False, True, False, False, True, True, True, True]


def test_alarm_rejects_bad_durations() -> None:
    with pytest.raises(ValueError, match="exit_duration"):
        HysteresisAlarm(exit_duration=0)
    with pytest.raises(ValueError, match="suppress_rows"):
        HysteresisAlarm(suppress_rows=-1)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([0.1, 0.96, 0.995, math.nan]), min_size=1, max_size=120),
    st.integers(0, 120),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 5),
)
def test_alarm_state_round_trip_mid_stream(
    seq: list[float], cut: int, min_duration: int, exit_duration: int, suppress_rows: int
) -> None:
    params = {"min_duration": min_duration, "exit_duration": exit_duration, "suppress_rows": suppress_rows}
    whole = HysteresisAlarm(**params).run(seq).tolist()
    first = HysteresisAlarm(**params)
    head = first.run(seq[:cut]).tolist()
    state = first.get_state()
    assert all(isinstance(v, bool | int) for v in state.values())  # plain data, JSON-able
    restored = HysteresisAlarm(**params).set_state(state)
    assert head + restored.run(seq[cut:]).tolist() == whole
    # run is update in a loop, nothing else.
    looped = HysteresisAlarm(**params)
    assert [looped.update(p) for p in seq] == whole
