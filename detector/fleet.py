"""Raw scores and calibrated probabilities of many assets' rows at once, bit for bit each model's own.

A live batch brings each asset a few rows, and scoring and calibrating a few rows costs a model its
numpy calls (about 25), not its rows. :func:`score_together` scores the rows of every model of one
kind and shape in one set of calls: PCA T²/Q (:class:`~detector.detectors.pca_spc.PcaSpc`, the
default) with the empirical calibrator. Models of other kinds are left to score themselves.

Identity, not closeness: each row goes through the same floating-point operations in the same order
as in ``detector.score`` and ``calibrator.transform`` — the standardisation and the limit ratios
elementwise with the row's own model's numbers, the projections as ``rowwise_matmul`` forms them
(every product, then a cumulative sum along the inner axis), the same ``einsum`` reductions, and the
same ``np.searchsorted`` ranks among each model's baseline scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from detector.calibration import EmpiricalCalibrator, _rank_below, log_survival_to_probability
from detector.chunks import runs_within
from detector.detectors.pca_spc import PcaSpc

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
    """``PcaSpc.score`` of every row with its owner's model (``PcaSpc._statistics`` step by step)."""
    center = np.stack([d.center_ for d in detectors])[owner]
    scale = np.stack([d.scale_ for d in detectors])[owner]
    components = np.stack([d.components_ for d in detectors])[owner]  # (rows, d, k)
    variance = np.stack([d.explained_variance_ for d in detectors])[owner]
    Z = (F - center) / scale
    t = _rowwise(Z, components)
    t2 = np.einsum("ij,ij->i", t, t / variance)
    resid = Z - _rowwise(t, components.transpose(0, 2, 1))
    q = np.einsum("ij,ij->i", resid, resid)
    r_t2 = t2 / np.array([d.t2_limit_ for d in detectors])[owner]
    r_q = q / np.array([d.q_limit_ for d in detectors])[owner]
    mode = detectors[0].score_mode
    if mode == "t2":
        return r_t2
    if mode == "q":
        return r_q
    if mode == "sum":
        return r_t2 + r_q
    return np.maximum(r_t2, r_q)


def _rowwise(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``rowwise_matmul(A[i:i+1], B[i])`` for every row ``i`` at once: the same products, summed in
    the same order (``np.cumsum`` along the inner axis, then ``0.0 +``)."""
    products = A[:, :, None] * B
    return 0.0 + np.cumsum(products, axis=1, dtype=np.float64)[:, -1]


def _calibrated(calibrators: Sequence[EmpiricalCalibrator], scores: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``EmpiricalCalibrator.transform`` of every score with its owner's calibrator."""
    n1 = np.array([c.n_baseline_ + 1 for c in calibrators])[owner]
    top = np.array([c.max_score_ for c in calibrators])[owner]
    tail_scale = np.array([c.tail_scale_ for c in calibrators])[owner]
    log_n1 = np.array([math.log(c.n_baseline_ + 1) for c in calibrators])[owner]
    below = _ranks_below(calibrators, scores, owner)
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.exp(-(scores - top) / tail_scale) / n1
        beyond = -log_n1 - (scores - top) / tail_scale
    survival = np.where(scores > top, tail, (n1 - below) / n1)
    inside = np.log1p(-below / n1)
    log_survival = np.where(np.isnan(scores), np.nan, np.where(scores > top, beyond, inside))
    return log_survival_to_probability(survival, log_survival)


def _ranks_below(calibrators: Sequence[EmpiricalCalibrator], scores: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``_rank_below(calibrator.baseline_scores_, score)`` for every score with its owner's calibrator:
    two ``np.searchsorted`` calls per model (laying every model's baseline scores end to end would take
    a few MB a batch at a thousand assets, which the allocator then keeps)."""
    below = np.empty(scores.size)
    bounds = np.searchsorted(owner, np.arange(len(calibrators) + 1))
    for calibrator, a, b in zip(calibrators, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        below[a:b] = _rank_below(calibrator.baseline_scores_, scores[a:b])
    return below
