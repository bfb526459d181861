"""Builds the FAISS item index of a bundle and checks its recall against exact search.

``flat`` is exact (the default; right for catalogues up to a few hundred thousand items). ``ivf`` and
``hnsw`` are approximate: their search parameter (``nprobe`` / ``efSearch``) is tuned upwards until
recall@10 against exact search, over the users' own query vectors, reaches ``min_recall`` — or the
export aborts. A pinned parameter (``--nprobe`` / ``--ef-search``) is checked, not tuned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

from service.bundle.artifacts import IndexSpec
from service.bundle.item_index import exact_top_k, set_search_params
from training.export.errors import ExportError

RECALL_K = 10
MAX_RECALL_QUERIES = 20000
EF_SEARCH_STEPS = (16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class IndexOptions:
    """What ``distillrec export --index …`` asks for."""

    kind: str = "flat"
    nlist: int | None = None  # IVF lists (default ≈ 4·√n_items, at least 39 items per list)
    nprobe: int | None = None  # pin IVF nprobe instead of tuning it
    hnsw_m: int = 32  # HNSW graph degree
    ef_search: int | None = None  # pin HNSW efSearch instead of tuning it
    min_recall: float = 0.95  # recall@10 vs exact search that an approximate index must reach


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / |exact| (rows of item indices; -1 is padding)."""
    hits = [len(np.intersect1d(f[f >= 0], e[e >= 0])) / max(1, int((e >= 0).sum())) for f, e in zip(found, exact)]
    return float(np.mean(hits)) if hits else 1.0


def _queries(user_vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    if len(user_vectors) <= MAX_RECALL_QUERIES:
        return user_vectors
    rows = np.random.default_rng(seed).choice(len(user_vectors), MAX_RECALL_QUERIES, replace=False)
    return user_vectors[np.sort(rows)]


def default_nlist(n_items: int) -> int:
    """≈ 4·√n lists, capped so that every list gets at least 39 training points (FAISS's minimum)."""
    return max(1, min(int(round(4 * math.sqrt(n_items))), n_items // 39))


def build_item_index(item_vectors: np.ndarray, user_vectors: np.ndarray, opts: IndexOptions) -> tuple[faiss.Index, IndexSpec]:
    """An inner-product index over ``item_vectors`` [n_items, d] (float32), checked with ``user_vectors`` [n_users, d].

    Raises :class:`ExportError` when an approximate index cannot reach ``opts.min_recall``.
    """
    items = np.ascontiguousarray(item_vectors, dtype=np.float32)
    n, d = items.shape
    if opts.kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(items)
        return index, IndexSpec(kind="flat", factory="Flat", exact=True, recall_at_10=1.0)

    queries = np.ascontiguousarray(_queries(user_vectors), dtype=np.float32)
    k = min(RECALL_K, n)
    exact = exact_top_k(items, queries, k)
    if opts.kind == "ivf":
        nlist = opts.nlist or default_nlist(n)
        if not 1 <= nlist <= n:
            raise ExportError(f"--nlist {nlist}: must be between 1 and the number of items ({n}).")
        factory, param = f"IVF{nlist},Flat", "nprobe"
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        index.train(items)
        steps = [opts.nprobe] if opts.nprobe else sorted({*(2**i for i in range(int(math.log2(nlist)) + 1)), nlist})
    elif opts.kind == "hnsw":
        factory, param = f"HNSW{opts.hnsw_m},Flat", "efSearch"
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        faiss.ParameterSpace().set_index_parameter(index, "efConstruction", 200)
        steps = [opts.ef_search] if opts.ef_search else list(EF_SEARCH_STEPS)
    else:
        raise ExportError(f"--index {opts.kind!r}: use flat, ivf or hnsw.")
    index.add(items)
    tried = []
    for value in steps:
        set_search_params(index, {param: value})
        recall = recall_at_k(index.search(queries, k)[1], exact)
        tried.append(f"{param}={value}: {recall:.3f}")
        if recall >= opts.min_recall:
            return index, IndexSpec(kind=opts.kind, factory=factory, search_params={param: int(value)}, exact=False, recall_at_10=recall)
    raise ExportError(
        f"the {opts.kind} index reaches recall@10 below {opts.min_recall} against exact search ({'; '.join(tried)}); "
        f"the bundle was not published. Use --index flat, or a larger {'--nlist/--nprobe' if opts.kind == 'ivf' else '--hnsw-m/--ef-search'}."
    )
