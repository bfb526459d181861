"""Early stopping on validation metrics, shared by the trainer and ``distillrec report --replay-stopping``.

An evaluation is *bad* only when none of the watched metrics improved on its own best so far; training
stops after ``patience`` bad evaluations in a row. Watching the selection metric alone is the usual
rule; the DE-RRD papers' loop watches HR@5, HR@10 and HR@20 (docs/methods.md#common-setup).
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


def replay_stopping(evals: list[dict], patience: int, metrics: list[str], select: str) -> dict:
    """Where a run with these validation evaluations ({"epoch", "valid"} records, in order) would stop
    under the rule "PATIENCE evaluations in which none of METRICS improved", and its best ``select`` epoch
    up to there (the earliest epoch on ties, as the trainer keeps the first best)."""
    bests: dict[str, float] = {}
    bad, stop = 0, None
    for record in evals:
        bad = 0 if improves(bests, record["valid"], metrics) else bad + 1
        if bad >= patience:
            stop = record["epoch"]
            break
    seen = [r for r in evals if stop is None or r["epoch"] <= stop]
    best_epoch = max(seen, key=lambda r: (r["valid"][select], -r["epoch"]))["epoch"]
    return {"stop_epoch": stop, "best_epoch": best_epoch}
