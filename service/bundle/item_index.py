"""FAISS item indexes as bundles store them: inner-product metric, search parameters from the manifest.

Shared by the exporter (which builds and tunes the index) and the service (which loads it).
Imports faiss, never torch.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from service.bundle.artifacts import BundleError, IndexSpec


def set_search_params(index: faiss.Index, params: dict[str, int]) -> None:
    """Applies search parameters (``nprobe`` for IVF, ``efSearch`` for HNSW) to ``index``."""
    if params:
        # the stub types the second argument as int; faiss takes the "name=value,..." string here
        faiss.ParameterSpace().set_index_parameters(index, ",".join(f"{k}={int(v)}" for k, v in sorted(params.items())))  # type: ignore[arg-type]


def load_item_index(path: Path, spec: IndexSpec, n_items: int, dim: int) -> faiss.Index:
    """Reads ``items.faiss``, checks it holds ``n_items`` vectors of ``dim``, applies the manifest's search parameters."""
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise BundleError(f"{path}: FAISS cannot read the index ({str(exc).splitlines()[0] if str(exc) else exc}). Re-export the bundle.") from None
    if index.ntotal != n_items or index.d != dim:
        raise BundleError(f"{path}: the index holds {index.ntotal} vectors of dimension {index.d}; the manifest says {n_items} × {dim}. Re-export the bundle.")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise BundleError(f"{path}: the index metric is not inner product. Re-export the bundle.")
    try:
        set_search_params(index, spec.search_params)
    except RuntimeError as exc:
        raise BundleError(f"{path}: search parameters {spec.search_params} do not apply to this index ({exc}).") from None
    return index


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """int64 [q, k]: exact inner-product top-k of ``queries`` [q, d] among ``vectors`` [n, d]."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]
