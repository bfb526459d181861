"""Loads a bundle version folder into a :class:`~service.recommender.Recommender`, refusing bad bundles.

A bundle is refused (``BundleError`` naming the file) when its manifest is missing or invalid, a
listed file is missing, or a checksum or size does not match; then when its arrays, ONNX graph or
FAISS index disagree with the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.bundle.artifacts import (
    ITEM_IDS,
    ITEM_VECTORS,
    POPULARITY,
    SEEN,
    USER_IDS,
    BundleError,
    Manifest,
    read_array,
    read_ids,
    read_manifest,
    read_seen,
    verify_files,
)
from service.bundle.item_index import load_item_index
from service.recommender import BundleData, EnsembleRecommender, FactorisedRecommender, Recommender, ScorerRecommender

# Manifest._consistent guarantees these of every model (non-ensemble) bundle; the asserts below narrow the types
_MODEL_SECTIONS = "Manifest validation requires 'onnx' and 'dim' of model bundles"


def onnx_session(path: Path, threads: int, arena: bool = True) -> ort.InferenceSession:
    """A CPU session tuned for small requests: ``threads`` intra-op threads, sequential, no spinning.

    ``arena=False`` for learned scorers: their activations are [users × items × width], and the CPU
    memory arena would keep the largest one ever seen for the life of the process.
    """
    opts = ort.SessionOptions()
    opts.enable_cpu_mem_arena = arena
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"{path}: ONNX Runtime cannot load the graph ({type(exc).__name__}: {str(exc).splitlines()[0]}). Re-export the bundle.") from None


def _check_signature(path: Path, session: ort.InferenceSession, manifest: Manifest) -> None:
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()]
    onnx = manifest.onnx
    assert onnx is not None, _MODEL_SECTIONS
    want_in = [t.name for t in onnx.inputs]
    want_out = [t.name for t in onnx.outputs]
    if got_in != want_in or got_out != want_out:
        raise BundleError(f"{path}: graph signature {got_in} → {got_out} differs from the manifest's {want_in} → {want_out}. Re-export the bundle.")


def _probe(path: Path, session: ort.InferenceSession, manifest: Manifest) -> None:
    """Runs the graph on the first and last user (and item) of the manifest and checks the output shape.

    A graph exported for other data (fewer users or items, another dimension) fails here, at load
    time, instead of answering 500 for some users later.
    """
    nu, ni, dim, onnx = manifest.data.n_users, manifest.data.n_items, manifest.dim, manifest.onnx
    assert dim is not None and onnx is not None, _MODEL_SECTIONS
    users = np.array([0, nu - 1], dtype=np.int64)
    names = [i.name for i in session.get_inputs()]
    feeds = {names[0]: users}
    want: tuple[int, ...] = (2, dim)
    if onnx.kind == "scorer":
        feeds[names[1]] = np.array([[0, ni - 1]] * 2, dtype=np.int64)
        want = (2, 2)
    what = f"the manifest's {nu} users × {ni} items" + (f", dimension {dim}" if onnx.kind == "user_tower" else "")
    try:
        out = session.run(None, feeds)[0]
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise BundleError(
            f"{path}: the graph fails on the last user/item index of {what} ({type(exc).__name__}: {first[:200]}); it was exported for other data. Re-export the bundle."
        ) from None
    if tuple(out.shape) != want:
        raise BundleError(
            f"{path}: the graph answers shape {list(out.shape)} for 2 users, expected {list(want)} from {what}; it was exported for another model. Re-export the bundle."
        )
    if not np.all(np.isfinite(out)):
        raise BundleError(f"{path}: the graph answers non-finite values for the first/last user. Re-export the bundle.")


def read_bundle_data(folder: Path, manifest: Manifest) -> BundleData:
    """ids, seen items and popularity of a bundle, checked against the manifest's user/item counts."""
    nu, ni = manifest.data.n_users, manifest.data.n_items
    user_ids, item_ids = read_ids(folder / USER_IDS), read_ids(folder / ITEM_IDS)
    if len(user_ids) != nu or len(item_ids) != ni:
        raise BundleError(f"{folder}: {len(user_ids)} user ids and {len(item_ids)} item ids, the manifest says {nu} and {ni}. Re-export the bundle.")
    indptr, indices = read_seen(folder / SEEN, nu, ni)
    popularity = read_array(folder / POPULARITY, "i", (ni,)).astype(np.int64)
    return BundleData(user_ids, item_ids, indptr, indices, popularity)


def load_recommender(name: str, folder: Path, ort_threads: int = 1, verify: bool = True) -> Recommender:
    """Validates ``folder`` (a bundle version) and builds the recommender it describes, served as ``name``."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if verify:
        verify_files(folder, manifest)  # covers member files of ensembles too
    if manifest.version != folder.name and verify:
        raise BundleError(
            f"{folder / 'manifest.json'}: version '{manifest.version}' but the folder is named '{folder.name}'. Do not rename bundle versions; re-export instead."
        )
    data = read_bundle_data(folder, manifest)
    if manifest.role == "ensemble":
        ensemble = manifest.ensemble
        assert ensemble is not None, "Manifest validation requires an 'ensemble' section of ensembles"
        members = []
        for i, m in enumerate(ensemble.members):
            member_dir = folder / m.path
            if not member_dir.resolve().is_relative_to(folder.resolve()):
                raise BundleError(f"{folder / 'manifest.json'}: member {i} path '{m.path}' leaves the bundle folder. Re-export the ensemble.")
            member = load_recommender(f"{name}/members/{i}", member_dir, ort_threads, verify=False)
            if member.manifest.data.fingerprint != manifest.data.fingerprint:
                raise BundleError(f"{folder / m.path / 'manifest.json'}: member {i} was trained on different data than the ensemble. Re-export the ensemble.")
            members.append(member)
        return EnsembleRecommender(name, manifest, data, members)
    onnx, dim = manifest.onnx, manifest.dim
    assert onnx is not None and dim is not None, _MODEL_SECTIONS
    vectors = read_array(folder / ITEM_VECTORS, "f", (manifest.data.n_items, dim)).astype(np.float32)
    session = onnx_session(folder / onnx.file, ort_threads, arena=manifest.score_function == "inner_product")
    _check_signature(folder / onnx.file, session, manifest)
    _probe(folder / onnx.file, session, manifest)
    if manifest.score_function == "inner_product":
        index_spec = manifest.index
        assert index_spec is not None, "Manifest validation requires an 'index' section of inner-product bundles"
        index = load_item_index(folder / index_spec.file, index_spec, manifest.data.n_items, dim)
        return FactorisedRecommender(name, manifest, data, session, index, vectors)
    return ScorerRecommender(name, manifest, data, session, vectors)
