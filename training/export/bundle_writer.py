"""Writes a model bundle folder (docs/service.md#2-the-bundle-layout-the-contract) from a finished run, and publishes folders atomically."""

from __future__ import annotations

import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

import faiss
import numpy as np
import torch

from service.bundle.artifacts import (
    BUNDLE_NAME_RE,
    ITEM_IDS,
    ITEM_VECTORS,
    MODEL_ONNX,
    POPULARITY,
    SEEN,
    USER_IDS,
    DataSpec,
    Manifest,
    file_entries,
    write_ids,
    write_latest,
    write_manifest,
    write_seen,
)
from training.data.dataset import Dataset
from training.export.errors import ExportError
from training.export.index_builder import IndexOptions, build_item_index
from training.export.onnx_graph import DEFAULT_OPSET, check_parity, export_onnx
from training.runs import LoadedRun

ROLES = ("teacher", "student")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced the bundle."""
    out = {}
    for p in ("distillrec", "torch", "onnx", "onnxscript", "onnxruntime", "faiss-cpu", "numpy"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def infer_role(run: LoadedRun) -> str:
    """``student`` for distilled runs (a ``distill`` section or KD terms) or runs named ``*student*``, else ``teacher``."""
    if run.config.distill is not None or run.result.get("kd"):
        return "student"
    name = (run.config.name or run.path.name).lower()
    return "student" if "student" in name else "teacher"


def data_spec(dataset: Dataset) -> DataSpec:
    return DataSpec(name=dataset.name, fingerprint=dataset.fingerprint(), split=dataset.split, n_users=dataset.n_users, n_items=dataset.n_items)


def all_interactions(dataset: Dataset):
    """Every known interaction of the dataset (training, validation and test), binary CSR, sorted indices.

    A served bundle never recommends an item the user already has, so its seen set is all of them,
    not only the training part: the held-out interactions are real history in production.
    """
    seen = ((dataset.train + dataset.valid + dataset.test) > 0).astype("int8").tocsr()
    seen.sort_indices()
    return seen


def write_data_files(folder: Path, dataset: Dataset) -> None:
    """ids, seen items (CSR, every interaction) and popularity of ``dataset`` into ``folder``."""
    write_ids(folder / USER_IDS, dataset.user_ids)
    write_ids(folder / ITEM_IDS, dataset.item_ids)
    seen = all_interactions(dataset)
    write_seen(folder / SEEN, seen.indptr, seen.indices)
    np.save(folder / POPULARITY, dataset.item_popularity().astype(np.int64), allow_pickle=False)


def _teacher_ref(run: LoadedRun):
    ref = run.result.get("teacher")
    if ref is None and run.config.distill is not None and run.config.distill.teacher is not None:
        ref = str(run.config.distill.teacher)
    return ref if ref is None or isinstance(ref, str) else json.dumps(ref, sort_keys=True)


def write_model_bundle(run: LoadedRun, folder: Path, bundle: str, version: str, role: str | None, index: IndexOptions, opset: int = DEFAULT_OPSET) -> Manifest:
    """Writes every file of a single-model bundle into ``folder``, self-checks, and writes the manifest last.

    Checks (each raises :class:`ExportError`): ``onnx.checker``; ONNX Runtime vs torch on every user
    (max abs diff ≤ 1e-4); for approximate indexes, recall@10 ≥ ``index.min_recall`` vs exact search.
    """
    model, dataset = run.model, run.dataset
    role = role or infer_role(run)
    if role not in ROLES:
        raise ExportError(f"--role {role!r}: use teacher or student (ensembles are exported from an ensemble folder).")
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    spec = export_onnx(model, folder / MODEL_ONNX, opset)
    spec = spec.model_copy(update={"max_abs_diff": check_parity(model, folder / MODEL_ONNX)})
    with torch.no_grad():
        users, items = (t.detach().numpy().astype(np.float32) for t in model.representations())
    np.save(folder / ITEM_VECTORS, np.ascontiguousarray(items), allow_pickle=False)
    index_spec = None
    if model.factorised:
        faiss_index, index_spec = build_item_index(items, users, index)
        faiss.write_index(faiss_index, str(folder / index_spec.file))
    elif index.kind != "flat":
        raise ExportError(
            f"--index {index.kind}: the {model.family} model is a learned scorer (not an inner product), so it has no item index; export it with the default --index flat."
        )
    write_data_files(folder, dataset)
    manifest = Manifest(
        bundle=bundle,
        version=version,
        role=role,
        family=model.family,
        constructor=model.constructor_args(),
        dim=int(users.shape[1]),
        parameters=model.num_parameters(),
        score_function="inner_product" if model.factorised else "learned",
        onnx=spec,
        index=index_spec,
        data=data_spec(dataset),
        metrics={part: run.result[part] for part in ("valid", "test", "refit") if part in run.result},
        select=run.result.get("select") or run.config.eval.select,
        teacher=_teacher_ref(run) if role == "student" else None,
        kd=list(run.result.get("kd") or []),
        source_run=str(run.path.resolve()),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        libraries=library_versions(),
        files=file_entries(folder),
    )
    write_manifest(folder, manifest)
    return manifest


def check_bundle_name(bundle: str) -> None:
    if not BUNDLE_NAME_RE.match(bundle):
        raise ExportError(
            f"--bundle {bundle!r}: use letters, digits, '.', '_' or '-' (at most 64 characters, starting with a letter or digit); it becomes a URL segment."
        )


def staging_folder(models_dir: Path, bundle: str, version: str) -> Path:
    """A hidden temporary folder beside the final one (same file system, so the rename is atomic)."""
    bundle_dir = Path(models_dir) / bundle
    bundle_dir.mkdir(parents=True, exist_ok=True)
    tmp = bundle_dir / f".tmp-{version}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def publish(staging: Path, models_dir: Path, bundle: str, version: str) -> Path:
    """Renames the staged folder to ``models_dir/bundle/version`` and moves ``LATEST`` to it (both atomic)."""
    final = Path(models_dir) / bundle / version
    if final.exists():
        raise ExportError(f"{final}: already exists; versions are immutable. Export again (a new version name is generated).")
    os.replace(staging, final)
    write_latest(final.parent, version)
    return final
