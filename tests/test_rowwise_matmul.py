"""``rowwise_matmul``: every output row depends only on its own input row, bit for bit, whichever
path computes it (all products at once for a stream's few rows, the per-column loop for long batches)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from detector.base import ROWWISE_AT_ONCE, _rowwise_matmul_loop, rowwise_matmul

# Zeros of both signs, infinities and NaN besides ordinary numbers of any magnitude.
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, -1.0]),
)


def bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64).view(np.int64)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 12), st.integers(1, 20), st.integers(1, 10), st.booleans())
def test_the_products_at_once_give_the_loops_sums_bit_for_bit(
    data: st.DataObject, n: int, inner: int, k: int, single: bool
) -> None:
    A = data.draw(arrays(np.float64, (n, inner), elements=VALUES))
    B = data.draw(arrays(np.float64, (inner, k), elements=VALUES))
    with np.errstate(all="ignore"):
        if single:  # single-precision rows are multiplied and summed in double precision on both paths
            A = A.astype(np.float32)
        fast, loop = rowwise_matmul(A, B), _rowwise_matmul_loop(A, B)
    assert fast.dtype == loop.dtype == np.float64
    # Every number the same to the bit (the sign of a zero too); NaN where the loop gives NaN (which
    # of the two NaN bit patterns the processor makes of inf - inf may differ, and nothing reads it).
    nan = np.isnan(loop)
    assert np.array_equal(nan, np.isnan(fast))
    assert np.array_equal(bits(fast)[~nan], bits(loop)[~nan])


def test_a_batch_too_long_for_the_products_at_once_gives_each_row_as_alone() -> None:
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(ROWWISE_AT_ONCE // 16 + 7, 16)), rng.normal(size=(16, 8))
    A[::5, 3] = -0.0
    A[97] = -0.0  # every product a zero, of either sign: the sums are +0.0 on both paths
    batch = rowwise_matmul(A, B)  # the loop
    alone = np.vstack([rowwise_matmul(A[i : i + 1], B) for i in range(0, A.shape[0], 97)])  # products at once
    assert np.array_equal(bits(batch[::97]), bits(alone))
    assert np.array_equal(bits(alone[1]), bits(np.zeros(8)))


@pytest.mark.parametrize("n", [3, 600])  # products at once, and the loop (600 x 16 x 16 > ROWWISE_AT_ONCE)
def test_one_matrix_per_row_sums_each_row_as_its_own_matrix_alone(n: int) -> None:
    rng = np.random.default_rng(n)
    A, B = rng.normal(size=(n, 16)), rng.normal(size=(n, 16, 16)) * 10.0 ** rng.integers(-8, 8, (n, 1, 1))
    together = rowwise_matmul(A, B)
    for i in range(n):
        assert together[i].tobytes() == rowwise_matmul(A[i : i + 1], B[i])[0].tobytes()
