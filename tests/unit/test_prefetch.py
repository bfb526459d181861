"""The software prefetch of the fused loops: it compiles to LLVM's prefetch and changes nothing."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from training.prefetch import prefetch


@numba.njit
def _sum_with_prefetch(flat, width, rows):
    total = 0.0
    for x in range(rows.shape[0]):
        if x + 2 < rows.shape[0]:
            prefetch(flat, rows[x + 2] * width, width)  # a row of the table
            prefetch(flat, rows[x + 2], np.int32(1))  # one element
        total += flat[rows[x] * width] + flat[rows[x] * width + width - 1] + flat[rows[x]]
    return total


def test_prefetching_spans_leaves_values_and_arrays_unchanged():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 40))  # a row spans five cache lines
    flat = table.reshape(-1)
    before = flat.copy()
    for rows in (rng.integers(0, 50, 40), rng.integers(0, 50, 40).astype(np.int32)):
        expected = float(np.sum(table[rows, 0] + table[rows, -1] + flat[rows]))
        assert _sum_with_prefetch(flat, 40, rows) == pytest.approx(expected, rel=1e-6)
    assert np.array_equal(flat, before)
    ir = "".join(_sum_with_prefetch.inspect_llvm().values())
    assert ir.count("call void @llvm.prefetch") >= 2, "a span: a loop over its lines, then its last element"


def test_prefetch_accepts_only_flat_contiguous_arrays():
    @numba.njit
    def table(a):
        prefetch(a, 0, 1)

    for bad in (np.zeros((2, 2)), np.zeros(8)[::2]):
        with pytest.raises(numba.core.errors.TypingError):
            table(bad)
