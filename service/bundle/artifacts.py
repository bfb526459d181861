"""The artifact bundle contract shared by the exporter (``training.export``) and the service.

One definition, two users: this module needs neither torch nor FastAPI (numpy and pydantic only).

A bundle version is a folder ``<models_dir>/<bundle>/<version>/`` holding (docs/service.md#2-the-bundle-layout-the-contract):

=====================  =============================================================================
``manifest.json``      :class:`Manifest` — written last; lists every other file with its sha256
``model.onnx``         the query tower (user index int64 [b] → user vector float32 [b, d]) or, for
                       non-factorised models, a scorer (users [b], items [b, c] → scores [b, c])
``items.faiss``        the item index (inner product; flat, IVF or HNSW); factorised models only
``item_vectors.npy``   float32 [n_items, d] item vectors (history fold-in, similar items, exact
                       fallback when an approximate index returns too few items)
``user_ids.npy``       external user ids in index order (fixed-width unicode, no pickle)
``item_ids.npy``       external item ids in index order (fixed-width unicode, no pickle)
``seen.npz``           training interactions as CSR arrays ``indptr`` int64 [n_users+1], ``indices``
                       int32 [nnz] (sorted per user), for exclude-seen
``popularity.npy``     int64 [n_items] training interactions per item, for the cold-start fallback
``members/<i>/``       ensemble bundles only: one complete member bundle per member
=====================  =============================================================================

``<models_dir>/<bundle>/LATEST`` holds the name of the version to serve. Every array is read with
``allow_pickle=False``; nothing in a bundle can run code when loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION: Literal[1] = 1

MANIFEST = "manifest.json"
MODEL_ONNX = "model.onnx"
ITEM_INDEX = "items.faiss"
ITEM_VECTORS = "item_vectors.npy"
USER_IDS = "user_ids.npy"
ITEM_IDS = "item_ids.npy"
SEEN = "seen.npz"
POPULARITY = "popularity.npy"
MEMBERS_DIR = "members"
LATEST = "LATEST"

#: Files every bundle has, whatever its role.
COMMON_FILES = (USER_IDS, ITEM_IDS, SEEN, POPULARITY)

BUNDLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

Role = Literal["teacher", "student", "ensemble"]


class BundleError(Exception):
    """A bundle is missing, malformed or corrupt. The message names the file and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), frozen=True)


class FileEntry(_Strict):
    """One file of the bundle: its path relative to the version folder, size and sha256."""

    path: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TensorSpec(_Strict):
    """An ONNX graph input or output: name, element type and shape (strings are dynamic axes)."""

    name: str
    dtype: str
    shape: list[int | str]


class OnnxSpec(_Strict):
    """The exported graph: ``user_tower`` (users → vectors) or ``scorer`` (users × items → scores)."""

    file: str = MODEL_ONNX
    kind: Literal["user_tower", "scorer"]
    opset: int
    exporter: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_abs_diff: float = Field(description="export self-check: ONNX Runtime vs torch, every user")


class IndexSpec(_Strict):
    """The FAISS item index and the search parameters it is served with."""

    file: str = ITEM_INDEX
    kind: Literal["flat", "ivf", "hnsw"]
    factory: str = Field(description="faiss.index_factory string, e.g. 'Flat', 'IVF41,Flat', 'HNSW32,Flat'")
    metric: Literal["inner_product"] = "inner_product"
    search_params: dict[str, int] = Field(default_factory=dict, description="e.g. {'nprobe': 8} or {'efSearch': 64}")
    exact: bool
    recall_at_10: float = Field(description="export self-check: recall@10 against exact search over every user's vector")


class DataSpec(_Strict):
    """The data the model was trained on (ids and seen items in this bundle come from it)."""

    name: str
    fingerprint: str
    split: str
    n_users: int = Field(ge=1)
    n_items: int = Field(ge=1)


class EnsembleMember(_Strict):
    """One member of an ensemble bundle: a complete bundle in ``path`` (relative) and its weight."""

    path: str
    weight: float = Field(gt=0)


class EnsembleSpec(_Strict):
    """Rank aggregation of the members' top-``list_length`` lists (``service.bundle.aggregation``)."""

    members: list[EnsembleMember] = Field(min_length=1)
    temperature: float = Field(gt=0)
    list_length: int = Field(ge=1)


class Manifest(_Strict):
    """Everything a server needs to know about a bundle version (docs/service.md#2-the-bundle-layout-the-contract)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    bundle: str = Field(pattern=BUNDLE_NAME_RE.pattern)
    version: str = Field(pattern=VERSION_RE.pattern)
    role: Role
    family: str = Field(description="mf, lightgcn, neumf or ensemble")
    constructor: dict = Field(default_factory=dict, description="the model's constructor arguments")
    dim: int | None = Field(None, description="dimension of the user/item vectors (None for ensembles)")
    parameters: int = Field(ge=0, description="inference-time parameters (summed over ensemble members)")
    score_function: Literal["inner_product", "learned", "rank_aggregation"]
    onnx: OnnxSpec | None = None
    index: IndexSpec | None = None
    ensemble: EnsembleSpec | None = None
    data: DataSpec
    metrics: dict = Field(default_factory=dict, description="offline metrics: {'valid': {...}, 'test': {...}} with protocol")
    select: str | None = Field(None, description="the validation metric the run was selected on, e.g. ndcg@10")
    teacher: str | None = Field(None, description="students: the teacher run they were distilled from")
    kd: list[dict] = Field(default_factory=list, description="students: the KD methods used")
    source_run: str
    created_at: str
    libraries: dict[str, str] = Field(default_factory=dict)
    files: list[FileEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        listed = {f.path for f in self.files}
        required = set(COMMON_FILES)
        if self.score_function == "rank_aggregation":
            if self.role != "ensemble" or self.ensemble is None:
                raise ValueError("score_function 'rank_aggregation' needs role 'ensemble' and an 'ensemble' section")
        else:
            if self.role == "ensemble" or self.ensemble is not None:
                raise ValueError("role 'ensemble' needs score_function 'rank_aggregation'")
            if self.onnx is None or self.dim is None:
                raise ValueError("a model bundle needs an 'onnx' section and 'dim'")
            want = "user_tower" if self.score_function == "inner_product" else "scorer"
            if self.onnx.kind != want:
                raise ValueError(f"score_function '{self.score_function}' needs onnx.kind '{want}', got '{self.onnx.kind}'")
            if self.score_function == "inner_product" and self.index is None:
                raise ValueError("score_function 'inner_product' needs an 'index' section")
            required |= {self.onnx.file, ITEM_VECTORS} | ({self.index.file} if self.index else set())
        missing = sorted(required - listed)
        if missing:
            raise ValueError(f"'files' does not list {missing}")
        return self

    def offline_metric(self, part: str = "valid") -> float | None:
        """The value of the selection metric (``select``) on ``part``, if recorded."""
        if not self.select:
            return None
        value = (self.metrics.get(part) or {}).get("metrics", {}).get(self.select)
        return float(value) if isinstance(value, (int, float)) else None


# ------------------------------------------------------------------------------------ files
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entries(root: str | Path, exclude: tuple[str, ...] = (MANIFEST,)) -> list[FileEntry]:
    """A :class:`FileEntry` for every file under ``root`` (recursively, sorted), except ``exclude``.

    Nested member manifests are included (they are part of the parent's content); only the top-level
    ``manifest.json`` is excluded since it cannot list its own checksum.
    """
    root = Path(root)
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel in exclude:
                continue
            out.append(FileEntry(path=rel, bytes=p.stat().st_size, sha256=sha256_file(p)))
    return out


def write_ids(path: str | Path, ids) -> None:
    """External ids (strings) as a fixed-width unicode ``.npy`` (never an object array)."""
    arr = np.asarray([str(x) for x in ids], dtype=str)
    if arr.ndim != 1:
        raise ValueError("ids must be one-dimensional")
    np.save(Path(path), arr, allow_pickle=False)


def read_ids(path: str | Path) -> np.ndarray:
    """Reads ids written by :func:`write_ids` → unicode array [n]."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the id file ({exc}). Re-export the bundle.") from None
    if arr.ndim != 1 or arr.dtype.kind != "U":
        raise BundleError(f"{path}: expected a 1-d unicode array of ids, got dtype {arr.dtype} shape {arr.shape}. Re-export the bundle.")
    if len(np.unique(arr)) != len(arr):
        raise BundleError(f"{path}: ids are not unique. Re-export the bundle.")
    return arr


def write_seen(path: str | Path, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Per-user training items as CSR arrays (indices sorted per user)."""
    np.savez(Path(path), indptr=np.asarray(indptr, dtype=np.int64), indices=np.asarray(indices, dtype=np.int32))


def read_seen(path: str | Path, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads :func:`write_seen` output → (indptr int64 [n_users+1], indices int32 [nnz]), checked."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            indptr, indices = npz["indptr"], npz["indices"]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path}: cannot read the seen-items CSR arrays ({exc}). Re-export the bundle.") from None
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise BundleError(f"{path}: 'indptr' does not describe {n_users} users over {len(indices)} entries. Re-export the bundle.")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise BundleError(f"{path}: item indices outside [0, {n_items}). Re-export the bundle.")
    return indptr.astype(np.int64, copy=False), indices.astype(np.int64)


def read_array(path: str | Path, dtype_kind: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Reads a plain ``.npy`` (no pickle) and checks its dtype kind ('f', 'i') and shape (None = any)."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the array ({exc}). Re-export the bundle.") from None
    ok_shape = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if arr.dtype.kind != dtype_kind or not ok_shape:
        raise BundleError(f"{path}: expected dtype kind '{dtype_kind}' and shape {shape}, got {arr.dtype} {arr.shape}. Re-export the bundle.")
    return arr


# --------------------------------------------------------------------------------- manifest
def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    """Writes ``manifest.json`` (call it last: it certifies the other files)."""
    path = Path(folder) / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def read_manifest(folder: str | Path) -> Manifest:
    """Parses and validates ``folder/manifest.json``; :class:`BundleError` names the file and field."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: missing. A folder without a manifest is not a bundle; export it with `distillrec export`.")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}). Re-export the bundle.") from None
    if isinstance(raw, dict) and raw.get("schema_version") not in (None, SCHEMA_VERSION):
        raise BundleError(
            f"{path}: schema_version {raw.get('schema_version')!r} is not supported (this service reads {SCHEMA_VERSION}). Re-export with this version of distillrec."
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise BundleError(f"{path}: invalid manifest: {details}. Re-export the bundle.") from None


def verify_files(folder: str | Path, manifest: Manifest) -> None:
    """Checks that every listed file exists, has the listed size and sha256, and stays inside ``folder``."""
    folder = Path(folder)
    root = folder.resolve()
    for entry in manifest.files:
        path = folder / entry.path
        if not path.resolve().is_relative_to(root):
            raise BundleError(f"{folder / MANIFEST}: file entry '{entry.path}' points outside the bundle.")
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing. Re-export the bundle (or restore the file).")
        size = path.stat().st_size
        if size != entry.bytes:
            raise BundleError(f"{path}: size {size} bytes, the manifest says {entry.bytes}: the file is corrupt or was changed. Re-export the bundle.")
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise BundleError(
                f"{path}: sha256 {digest[:12]}… does not match the manifest ({entry.sha256[:12]}…): the file is corrupt or was changed. Re-export the bundle."
            )


# ----------------------------------------------------------------------------- LATEST pointer
def new_version() -> str:
    """A sortable, unique version name: UTC time plus a random suffix, e.g. ``20260101T120000Z-3fa9c1``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def write_latest(bundle_dir: str | Path, version: str) -> None:
    """Points ``bundle_dir/LATEST`` at ``version`` atomically (temporary file, fsync, rename)."""
    if not VERSION_RE.match(version):
        raise ValueError(f"invalid version name {version!r}")
    bundle_dir = Path(bundle_dir)
    tmp = bundle_dir / f".{LATEST}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "w") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, bundle_dir / LATEST)


#: a LATEST pointer holds one version name; anything longer is not a pointer
LATEST_MAX_BYTES = 256


def _inside(path: Path, root: Path, what: str) -> None:
    """:class:`BundleError` when ``path`` resolves (through symlinks) outside ``root``."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise BundleError(f"{path}: cannot be resolved ({type(exc).__name__}). Remove the symlink and re-export the bundle.") from None
    if not resolved.is_relative_to(root.resolve()):
        raise BundleError(f"{path}: the {what} is a symlink that leaves the models dir; it is refused. Copy the bundle into the models dir instead.")


def read_latest(bundle_dir: str | Path, models_dir: str | Path | None = None) -> Path:
    """The version folder ``bundle_dir/LATEST`` names; :class:`BundleError` if absent, dangling or unreadable.

    The bundle folder, ``LATEST`` and the version folder must stay inside ``models_dir`` (default: the
    bundle folder's parent) after symlinks are followed; ``LATEST`` must be a small regular UTF-8 file.
    Messages never quote its content.
    """
    bundle_dir = Path(bundle_dir)
    root = Path(models_dir) if models_dir is not None else bundle_dir.parent
    pointer = bundle_dir / LATEST
    _inside(bundle_dir, root, "bundle folder")
    if not pointer.exists() and not pointer.is_symlink():
        raise BundleError(
            f"{pointer}: missing, so no version of bundle '{bundle_dir.name}' is published. Export one with `distillrec export --bundle {bundle_dir.name}`."
        )
    _inside(pointer, root, "LATEST pointer")
    try:
        info = pointer.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{pointer}: not a regular file. LATEST is a small text file written by `distillrec export`; re-export the bundle.")
        if info.st_size > LATEST_MAX_BYTES:
            raise BundleError(
                f"{pointer}: {info.st_size} bytes, a version name has at most {LATEST_MAX_BYTES}. Re-export the bundle (LATEST is written by `distillrec export`)."
            )
        with open(pointer, "rb") as fh:
            raw = fh.read(LATEST_MAX_BYTES + 1)
        version = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BundleError(f"{pointer}: not UTF-8 text. Re-export the bundle (LATEST is written by `distillrec export`).") from None
    except OSError as exc:
        raise BundleError(
            f"{pointer}: cannot be read ({type(exc).__name__}: {exc.strerror or 'error'}). Check its permissions or re-export the bundle."
        ) from None
    if len(raw) > LATEST_MAX_BYTES or not VERSION_RE.match(version):
        raise BundleError(
            f"{pointer}: does not hold a version name (letters, digits, '.', '_', '-'; at most 128). Re-export the bundle (LATEST is written by `distillrec export`)."
        )
    folder = bundle_dir / version
    if not folder.is_dir():
        raise BundleError(f"{pointer}: names version '{version}' but {folder} does not exist. Re-export the bundle.")
    _inside(folder, root, "version folder")
    return folder


def bundle_names(models_dir: str | Path) -> list[str]:
    """Names of the bundle folders under ``models_dir`` (hidden folders and plain files skipped), sorted."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and not _only_staging(p))


def _only_staging(folder: Path) -> bool:
    """True for a bundle folder that holds nothing but hidden entries (an export in progress, or one that failed)."""
    try:
        return all(p.name.startswith(".") for p in folder.iterdir())
    except OSError:
        return False
