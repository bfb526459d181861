"""One request, one core: FAISS (OpenMP) and numpy's BLAS run single-threaded in the service.

Each request's work is tens of microseconds; spreading one matrix-vector product over several
threads only adds hand-offs and spinning threads that take cores from the other requests in flight.
The service calls :func:`one_thread_per_request` at start-up; the in-process latency benchmarks call
it too, so that they time what the service runs.
"""

from __future__ import annotations

import faiss
from threadpoolctl import threadpool_limits


def one_thread_per_request() -> None:
    """FAISS and the BLAS behind numpy on one thread, for the rest of the process."""
    faiss.omp_set_num_threads(1)
    threadpool_limits(1, user_api="blas")
