"""The software prefetch of the fused loops: it compiles to LLVM's prefetch and changes nothing."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from training.prefetch import prefetch


@numba.njit
def _sum_with_prefetch(table, column, rows):
    total = 0.0
    for x in range(rows.shape[0]):
        if x + 2 < rows.shape[0]:
            prefetch(table, rows[x + 2])
            prefetch(column, rows[x + 2])
        total += table[rows[x], 0] + table[rows[x], -1] + column[rows[x]]
    return total


def test_prefetching_rows_and_elements_leaves_values_and_arrays_unchanged():
    rng = np.random.default_rng(0)
    table, column = rng.normal(size=(50, 40)), rng.normal(size=50)  # a row spans five cache lines
    before = table.copy(), column.copy()
    for rows in (rng.integers(0, 50, 40), rng.integers(0, 50, 40).astype(np.int32)):
        expected = float(np.sum(table[rows, 0] + table[rows, -1] + column[rows]))
        assert _sum_with_prefetch(table, column, rows) == pytest.approx(expected, rel=1e-6)
    assert np.array_equal(table, before[0]) and np.array_equal(column, before[1])
    ir = "".join(_sum_with_prefetch.inspect_llvm().values())
    assert ir.count("call void @llvm.prefetch") >= 3, "a row (a loop over its lines, then its last element) and an element"


def test_prefetch_accepts_only_one_and_two_dimensional_arrays():
    @numba.njit
    def cube(a):
        prefetch(a, 0)

    with pytest.raises(numba.core.errors.TypingError):
        cube(np.zeros((2, 2, 2)))
