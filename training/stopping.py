"""Early stopping on validation metrics, shared by the trainer and ``distillrec report --replay-stopping``.

An evaluation is *bad* only when none of the watched metrics improved on its own best so far; training
stops after ``patience`` bad evaluations in a row. Watching the selection metric alone is the usual
rule; the DE-RRD papers' loop watches HR@5, HR@10 and HR@20 (METHODS.md §0.3).
"""

from __future__ import annotations

import math


def improves(bests: dict[str, float], metrics: dict[str, float], watch: list[str]) -> bool:
    """Whether any watched metric beats its best in ``bests`` (updated in place with the new bests)."""
    improved = False
    for m in watch:
        if metrics[m] > bests.get(m, -math.inf):
            bests[m] = metrics[m]
            improved = True
    return improved
