"""Did one episode of the baseline set the alarm level?

With cross-fitting, each block of the baseline is scored by a model fitted without it. A stretch
unlike the rest (a start-up, a cleaning cycle, a fault) then scores high, the calibrator puts the
alarm level above it, and the live model, which learned every row, will not alarm on rows as unusual.
``find_episode`` names such a stretch so the operator can learn from a period without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.calibration import Calibrator, cross_fitting_folds
from detector.config import MonitorConfig

# Fewer baseline scores beyond the alarm entry level than this make that level a guess (the usual
# minimum number of exceedances for a tail estimate; with 10 the false-alarm rate is known to ~±30 %).
MIN_SCORES_BEYOND_ENTER = 10
# A baseline episode "sets the alarm level" when one cross-fitting block (or two adjacent ones) holds
# at least this share of the scores beyond it and, left out, the rest of the baseline would reach
# that level this many times less often than ``1 - enter``.
EPISODE_SHARE = 0.5
EPISODE_RARITY = 10.0


@dataclass(frozen=True, slots=True)
class BaselineEpisode:
    """One stretch of the baseline that set the alarm level (see ``advice.episode_advice``).

    Scored in cross-fitting by a model that never saw anything like it, it looked abnormal, and the
    alarm level was put above it; the live model learned it, so rows as unusual will not alarm.
    """

    start_ns: int  # first and last baseline row of the episode beyond the alarm level
    end_ns: int
    scores_beyond: int  # of the baseline's scores beyond the alarm level, how many are the episode's
    scores_beyond_total: int
    rarity: float  # how many times less often the rest of the baseline reaches the alarm level


def find_episode(
    ts: np.ndarray, scores: np.ndarray, calibrator: Calibrator, config: MonitorConfig
) -> BaselineEpisode | None:
    """The stretch of the baseline (one cross-fitting block, or two adjacent ones: an episode may
    straddle a boundary) that holds most cross-fitted ``scores`` beyond the alarm level, if it set
    that level. ``ts``: the scored rows' stamps.

    Only judged with ``MIN_SCORES_BEYOND_ENTER`` such scores (fewer say little about any block).
    """
    finite = np.isfinite(scores)
    beyond = finite & (calibrator.transform(np.where(finite, scores, -np.inf)) >= config.enter)
    total = int(beyond.sum())
    if total < MIN_SCORES_BEYOND_ENTER:
        return None
    folds = cross_fitting_folds(scores.size, config.calibration_folds)
    stretches = folds + [np.concatenate(pair) for pair in zip(folds, folds[1:], strict=False)]
    counts = [int(beyond[rows].sum()) for rows in stretches]
    k = int(np.argmax(counts))  # singles come first: a tie keeps the shorter stretch
    if counts[k] < EPISODE_SHARE * total:
        return None
    inside = np.zeros(scores.size, dtype=bool)
    inside[stretches[k]] = True
    without = config.make_calibrator().fit(scores[~inside & finite])
    level = score_at_probability(calibrator, config.enter, float(scores[finite].min()), float(scores[finite].max()))
    reached = 1.0 - float(without.transform(np.array([level]))[0])  # how often the rest reach it
    rarity = (1.0 - config.enter) / max(reached, 1e-300)
    if not rarity >= EPISODE_RARITY:  # NaN too
        return None
    rows = stretches[k][beyond[stretches[k]]]
    return BaselineEpisode(int(ts[rows[0]]), int(ts[rows[-1]]), counts[k], total, rarity)


BISECTION_STEPS = 100
LOOKAHEAD = 6  # bisection steps whose midpoints are judged in one call of the calibrator


def score_at_probability(calibrator: Calibrator, probability: float, low: float, high: float) -> float:
    """The smallest score the calibrator maps to ``probability`` or more (bisection; it is monotone).

    Each call of the calibrator costs far more than judging one more score in it, and recalibration
    runs this for every asset once a baseline length (100 assets that learned together: 0.3 s in one
    batch). So the midpoints of the next ``LOOKAHEAD`` steps, every one they could reach, are judged
    together, and the steps then walk down them: the same midpoints, the same decisions, the same
    result as one step at a time (the calibrator judges each score alone), in 17 calls instead of 100.
    """
    for _ in range(200):  # widen until the level is inside: it may lie in the tail beyond the baseline
        if calibrator.transform(np.array([high]))[0] >= probability:
            break
        high += 2.0 * (high - low) + 1.0
    done = 0
    while done < BISECTION_STEPS:
        depth = min(LOOKAHEAD, BISECTION_STEPS - done)
        mids = _midpoint_tree(low, high, depth)
        reached = calibrator.transform(np.array(mids)) >= probability
        node = 0  # breadth first: node i's children are 2i + 1 (reached: high = mid) and 2i + 2
        for _ in range(depth):
            if reached[node]:
                high, node = mids[node], 2 * node + 1
            else:
                low, node = mids[node], 2 * node + 2
        done += depth
    return high


def _midpoint_tree(low: float, high: float, depth: int) -> list[float]:
    """Every midpoint ``depth`` bisection steps of ``[low, high]`` can take, breadth first."""
    mids: list[float] = []
    brackets = [(low, high)]
    for _ in range(depth):
        following = []
        for lo, hi in brackets:
            mid = 0.5 * (lo + hi)
            mids.append(mid)
            following += [(lo, mid), (mid, hi)]
        brackets = following
    return mids
