"""A process-wide cap on learned-scorer work in flight (``DISTILLREC_MAX_SCORING_CALLS``).

A learned scorer (NeuMF) scores every item for every user of a batch; its ONNX activations grow
with users × items × width. Batches are scored in chunks of bounded size (``service.recommender``)
and at most ``limit`` chunks run at once over all requests, so that concurrent batch calls cannot
add up to an unbounded peak of memory or of busy cores. Single-user requests are one small chunk
and run on the event loop without waiting here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_gate = threading.BoundedSemaphore(2)


def set_limit(limit: int) -> None:
    """Sets how many scorer chunks may run at once (called by the app at start-up)."""
    global _gate
    if limit < 1:
        raise ValueError(f"the scoring limit must be at least 1, got {limit}")
    _gate = threading.BoundedSemaphore(limit)


@contextmanager
def scoring_slot() -> Iterator[None]:
    """Holds one of the slots while a chunk is scored."""
    gate = _gate  # the semaphore acquired is the one released, even if set_limit runs meanwhile
    with gate:
        yield
