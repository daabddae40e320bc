"""What to change about a learned baseline, in words an operator can act on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from detector.calibration import Calibrator
from detector.config import MonitorConfig
from detector.episode import MIN_SCORES_BEYOND_ENTER, BaselineEpisode


def scores_beyond_enter(calibrator: Calibrator | None, enter: float) -> float | None:
    """How many baseline scores lie beyond the alarm entry level: ``n × (1 − enter)``.

    The entry level is a quantile of the baseline's (cross-fitted) scores, estimated from the scores
    beyond it; with ``k`` of them its false-alarm rate is uncertain by about ``1/√k`` (``k`` = 3:
    ±60 %). ``None`` before a baseline is learned.
    """
    if calibrator is None:
        return None
    return float(calibrator.n_baseline_) * (1.0 - enter)


def short_baseline_advice(asset: str, beyond: float | None, config: MonitorConfig, learned_rows: int) -> str | None:
    """What to change when too few baseline scores lie beyond the alarm level (None when enough).
    ``learned_rows``: the rows the baseline learned from (more than ``baseline_rows`` where it went on)."""
    if beyond is None or beyond >= MIN_SCORES_BEYOND_ENTER:
        return None
    scale = MIN_SCORES_BEYOND_ENTER / max(beyond, 1e-9)
    if config.false_alerts_per_week is not None:  # the level is extrapolated from the tail beyond enter
        what = (
            f"only {beyond:.1f} of its scores lie beyond enter={config.enter:g}, so the tail the alarm level is "
            "extrapolated from is a rough guess"
        )
    else:
        what = (
            f"only {beyond:.1f} of its scores lie beyond the alarm level enter={config.enter:g}, so the "
            "false-alarm rate at that level is a rough guess"
        )
    return (
        f"baseline of {asset}: {what}; learn from "
        f"about {scale:.1f}x as many rows (baseline_rows >= {math.ceil(learned_rows * scale)}) "
        "or lower enter"
    )


def episode_advice(asset: str, episode: BaselineEpisode | None, config: MonitorConfig) -> str | None:
    """What to check when one episode of the baseline set the alarm level (None otherwise)."""
    if episode is None:
        return None
    return (
        f"baseline of {asset}: {episode.scores_beyond} of its {episode.scores_beyond_total} scores "
        f"beyond the alarm level enter={config.enter:g} come from one episode, {_utc(episode.start_ns)} to "
        f"{_utc(episode.end_ns)}; the rest of the baseline reaches that level {episode.rarity:.0f}x less "
        "often than enter intends, so rows as unusual as that episode will not alarm. If it was not "
        "ordinary running (a start-up, a cleaning cycle, a fault), learn the baseline from a period without it"
    )


def rose_and_fell(names: Sequence[str], one_way: np.ndarray) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The sensors ``one_way`` (:mod:`detector.transitions`: +1, -1 or 0 per sensor) says only rose,
    and those it says only fell, in ``names`` order."""
    ways = one_way.tolist()
    rose = tuple(name for name, way in zip(names, ways, strict=True) if way > 0)
    fell = tuple(name for name, way in zip(names, ways, strict=True) if way < 0)
    return rose, fell


def one_way_advice(asset: str, names: Sequence[str], one_way: np.ndarray | None) -> str | None:
    """What to change when the baseline saw sensors move one way only (None otherwise)."""
    if one_way is None or not one_way.any():
        return None
    rose, fell = rose_and_fell(names, one_way)
    moves = " and ".join(f"{', '.join(group)} only {verb}" for group, verb in ((rose, "rose"), (fell, "fell")) if group)
    return (
        f"baseline of {asset}: {moves} while it was learned, never the other way; the states after such a "
        "change the other way (a temperature that lags a change of load, say) were never seen and may "
        "alert. Learn the baseline over a stretch that holds the process's changes both ways"
    )


def joined(asset: str, advice: Sequence[str | None]) -> str | None:
    """Several pieces of advice as one: the first whole, the others after it without the asset's name."""
    given = [text for text in advice if text]
    if not given:
        return None
    prefix = f"baseline of {asset}: "
    rest = [text.removeprefix(prefix) for text in given[1:]]
    return "; also, ".join([given[0], *rest])


def _utc(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def capped_advice(asset: str, derived: float, cap: float, config: MonitorConfig) -> str | None:
    """What to change when the detector's scores stop growing below the level the false-alert target
    asks for (None otherwise): the level stays where far rows still reach, so the target is not held."""
    if config.false_alerts_per_week is None or derived <= cap:
        return None
    return (
        f"baseline of {asset}: detector {config.detector!r} stops scoring rows higher once they lie far "
        f"outside the baseline, below the alarm level false_alerts_per_week={config.false_alerts_per_week:g} "
        f"asks for ({derived:.7f}); the level stays at {cap:.7f}, so expect more false alerts than that. "
        "pca_spc, robust_z and knn scores keep growing"
    )
