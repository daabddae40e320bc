"""Raw scores and calibrated probabilities of many assets' rows at once, bit for bit each model's own.

A live batch brings each asset a few rows, and scoring and calibrating a few rows costs a model its
numpy calls (about 25), not its rows. :func:`score_together` scores the rows of every model of one
kind and shape in one set of calls: PCA T²/Q (:class:`~detector.detectors.pca_spc.PcaSpc`, the
default) with the empirical calibrator. Models of other kinds are left to score themselves.

Identity, not closeness: each row goes through the same functions as in ``detector.score`` and
``calibrator.transform`` (``pca_spc.statistics`` and ``combined``, ``calibration.empirical_probability``),
given its own model's numbers: ``rowwise_matmul`` sums every row in the same order whether it holds
one matrix or one per row, and the ranks among each model's baseline scores are its own
``np.searchsorted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detector.calibration import EmpiricalCalibrator, _rank_below, empirical_probability
from detector.chunks import runs_within
from detector.detectors.pca_spc import PcaSpc, combined, statistics

Scored = tuple[np.ndarray, np.ndarray]  # (raw scores, calibrated probabilities) of one model's rows

# Rows scored in one go at most. Past a few dozen models the calls cost little per model, while the
# arrays grow with the rows: a thousand assets' rows at once took several MB a batch, which the
# allocator then kept (docs/throughput.md, Memory).
CHUNK_ROWS = 1024


def score_together(batches: Sequence[tuple[Any, Any, np.ndarray]]) -> list[Scored | None]:
    """For every ``(detector, calibrator, rows)``: ``(detector.score(rows), calibrator.transform(those))``,
    worked out with the other batches of the same kind and shape; None for one left to its models
    (another kind, alone with its shape, or rows they would refuse)."""
    out: list[Scored | None] = [None] * len(batches)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (detector, calibrator, F) in enumerate(batches):
        if type(detector) is PcaSpc and type(calibrator) is EmpiricalCalibrator and _fits(detector, F):
            groups.setdefault((detector.components_.shape, detector.score_mode), []).append(i)
    sizes = [len(F) for _, _, F in batches]
    for group in groups.values():
        for members in runs_within(group, sizes, CHUNK_ROWS):
            if len(members) > 1:
                _score_chunk(batches, members, out)
    return out


def _score_chunk(batches: Sequence[tuple[Any, Any, np.ndarray]], members: list[int], out: list[Scored | None]) -> None:
    """Score the ``members`` of one group together, into ``out``."""
    detectors = [batches[i][0] for i in members]
    calibrators = [batches[i][1] for i in members]
    rows = [np.asarray(batches[i][2], dtype=np.float64) for i in members]
    sizes = [F.shape[0] for F in rows]
    owner = np.repeat(np.arange(len(members)), sizes)
    raw = _pca_scores(detectors, np.concatenate(rows), owner)
    prob = _calibrated(calibrators, raw, owner)
    bounds = np.cumsum([0, *sizes]).tolist()
    for i, a, b in zip(members, bounds[:-1], bounds[1:], strict=True):
        out[i] = (raw[a:b], prob[a:b])


def _fits(detector: PcaSpc, F: np.ndarray) -> bool:
    """A fitted model and rows it scores as they are (``_validate_score_input`` would refuse the rest)."""
    return (
        hasattr(detector, "components_")
        and isinstance(F, np.ndarray)
        and F.ndim == 2
        and F.shape[0] > 0
        and F.shape[1] == detector.n_features_in_
    )


def _pca_scores(detectors: Sequence[PcaSpc], F: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``PcaSpc.score`` of every row with its owner's model: its own steps, with each row's numbers."""
    center = np.stack([d.center_ for d in detectors])[owner]
    scale = np.stack([d.scale_ for d in detectors])[owner]
    components = np.stack([d.components_ for d in detectors])[owner]  # (rows, d, k)
    variance = np.stack([d.explained_variance_ for d in detectors])[owner]
    t2, q, _, _ = statistics((F - center) / scale, components, variance)
    r_t2 = t2 / np.array([d.t2_limit_ for d in detectors])[owner]
    r_q = q / np.array([d.q_limit_ for d in detectors])[owner]
    return combined(r_t2, r_q, detectors[0].score_mode)


def _calibrated(calibrators: Sequence[EmpiricalCalibrator], scores: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``EmpiricalCalibrator.transform`` of every score with its owner's calibrator's tail."""
    tails = np.array([c._tail() for c in calibrators])[owner]  # (rows, 4): n + 1, ln(n + 1), top, scale
    n1 = tails[:, 0].astype(np.int64)
    below = _ranks_below(calibrators, scores, owner)
    return empirical_probability(scores, below, (n1, tails[:, 1], tails[:, 2], tails[:, 3]))


def _ranks_below(calibrators: Sequence[EmpiricalCalibrator], scores: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``_rank_below(calibrator.baseline_scores_, score)`` for every score with its owner's calibrator:
    two ``np.searchsorted`` calls per model (laying every model's baseline scores end to end would take
    a few MB a batch at a thousand assets, which the allocator then keeps)."""
    below = np.empty(scores.size)
    bounds = np.searchsorted(owner, np.arange(len(calibrators) + 1))
    for calibrator, a, b in zip(calibrators, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        below[a:b] = _rank_below(calibrator.baseline_scores_, scores[a:b])
    return below
