"""Tiny bundles for the service tests, written with numpy, ``onnx.helper`` and faiss (no torch, no
training): the same files and manifest an export writes, through the bundle contract's own writers.

The default shape is MovieLens-100K's (943 users, 1,682 items) at dimension 16. Users and items fall
into ``clusters`` taste groups; a user's vector points at its group's items, so a working service
recommends a user's own group first. Each user has seen 5–40 items of its own group, except user
"11", who has seen 740 items of every group (a heavy user, as MovieLens has). External ids
are ``"1" … "n"`` for users and for items, as in MovieLens.
"""

from __future__ import annotations

import time
from pathlib import Path

import faiss
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.bundle.artifacts import (
    ITEM_IDS,
    ITEM_VECTORS,
    MEMBERS_DIR,
    MODEL_ONNX,
    POPULARITY,
    SEEN,
    USER_IDS,
    DataSpec,
    EnsembleMember,
    EnsembleSpec,
    IndexSpec,
    Manifest,
    OnnxSpec,
    TensorSpec,
    file_entries,
    new_version,
    write_ids,
    write_latest,
    write_manifest,
    write_seen,
)

OPSET = 18
FAMILIES = ("mf", "lightgcn", "neumf")


class TinyData:
    """Clustered vectors, seen items and popularity for ``n_users`` × ``n_items``."""

    def __init__(self, n_users: int = 943, n_items: int = 1682, dim: int = 16, clusters: int = 8, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        user_group, item_group = np.arange(n_users) % clusters, np.arange(n_items) % clusters
        centres = np.eye(clusters, dim, dtype=np.float32) * 2.0
        self.users = (centres[user_group] + 0.1 * rng.standard_normal((n_users, dim))).astype(np.float32)
        self.items = (centres[item_group] + 0.1 * rng.standard_normal((n_items, dim))).astype(np.float32)
        rows = [np.sort(rng.choice(np.flatnonzero(item_group == g), rng.integers(5, 41), replace=False)) for g in user_group]
        rows[10] = np.sort(rng.choice(n_items, 740, replace=False))
        self.indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        self.indices = np.concatenate(rows).astype(np.int32)
        self.popularity = np.bincount(self.indices, minlength=n_items).astype(np.int64)
        self.fingerprint = f"tiny-{n_users}x{n_items}-{seed}"

    def vectors(self, family: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) of a model of ``family``: the learned scorer (neumf) ranks within a group
        differently from the factorised families (another noise draw), as a different model would."""
        if family != "neumf":
            return self.users, self.items
        rng = np.random.default_rng(1)
        return (
            (self.users + 0.3 * rng.standard_normal(self.users.shape)).astype(np.float32),
            (self.items + 0.3 * rng.standard_normal(self.items.shape)).astype(np.float32),
        )

    def spec(self) -> DataSpec:
        return DataSpec(name="tiny", fingerprint=self.fingerprint, split="loo-time", n_users=self.n_users, n_items=self.n_items)

    def write_common_files(self, folder: Path) -> None:
        write_ids(folder / USER_IDS, [str(u + 1) for u in range(self.n_users)])
        write_ids(folder / ITEM_IDS, [str(i + 1) for i in range(self.n_items)])
        write_seen(folder / SEEN, self.indptr, self.indices)
        np.save(folder / POPULARITY, self.popularity, allow_pickle=False)


def _tensor(name: str, dtype: str, shape: list) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def user_tower_graph(users: np.ndarray) -> tuple[onnx.ModelProto, OnnxSpec]:
    """users int64 [batch] → user_vectors float32 [batch, d]: a Gather from the user table."""
    d = users.shape[1]
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "users"], ["user_vectors"], axis=0)],
        "user_tower",
        [helper.make_tensor_value_info("users", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("user_vectors", TensorProto.FLOAT, ["batch", d])],
        [numpy_helper.from_array(users, "table")],
    )
    spec = OnnxSpec(
        kind="user_tower",
        opset=OPSET,
        exporter="tests.bundle_factory",
        inputs=[_tensor("users", "int64", ["batch"])],
        outputs=[_tensor("user_vectors", "float", ["batch", d])],
        max_abs_diff=0.0,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), spec


def scorer_graph(users: np.ndarray, items: np.ndarray) -> tuple[onnx.ModelProto, OnnxSpec]:
    """users int64 [batch], items int64 [batch, candidates] → scores float32 [batch, candidates]: ⟨u, i⟩."""
    nodes = [
        helper.make_node("Gather", ["user_table", "users"], ["u"], axis=0),
        helper.make_node("Unsqueeze", ["u", "axis1"], ["u3"]),
        helper.make_node("Gather", ["item_table", "items"], ["v"], axis=0),
        helper.make_node("Mul", ["u3", "v"], ["uv"]),
        helper.make_node("ReduceSum", ["uv", "axis2"], ["scores"], keepdims=0),
    ]
    inits = [
        numpy_helper.from_array(users, "user_table"),
        numpy_helper.from_array(items, "item_table"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    graph = helper.make_graph(
        nodes,
        "scorer",
        [
            helper.make_tensor_value_info("users", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("items", TensorProto.INT64, ["batch", "candidates"]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "candidates"])],
        inits,
    )
    spec = OnnxSpec(
        kind="scorer",
        opset=OPSET,
        exporter="tests.bundle_factory",
        inputs=[_tensor("users", "int64", ["batch"]), _tensor("items", "int64", ["batch", "candidates"])],
        outputs=[_tensor("scores", "float", ["batch", "candidates"])],
        max_abs_diff=0.0,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), spec


def _manifest(folder: Path, bundle: str, version: str, role: str, family: str, data: TinyData, **fields) -> Manifest:
    metrics = {part: {"protocol": "full", "metrics": {"ndcg@10": value, "hr@10": 2 * value}} for part, value in (("valid", 0.25), ("test", 0.24))}
    manifest = Manifest(
        bundle=bundle,
        version=version,
        role=role,
        family=family,
        data=data.spec(),
        metrics=metrics,
        select="ndcg@10",
        source_run=f"tests/{bundle}",
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        files=file_entries(folder),
        **fields,
    )
    write_manifest(folder, manifest)
    return manifest


def write_model_version(folder: Path, bundle: str, version: str, family: str, role: str, data: TinyData) -> Manifest:
    """One single-model bundle version in ``folder``: ONNX graph, item vectors, index (factorised families), data files."""
    folder.mkdir(parents=True, exist_ok=True)
    factorised = family != "neumf"
    users, items = data.vectors(family)
    model, spec = user_tower_graph(users) if factorised else scorer_graph(users, items)
    onnx.save(model, str(folder / MODEL_ONNX))
    np.save(folder / ITEM_VECTORS, items, allow_pickle=False)
    index_spec = None
    if factorised:
        index = faiss.IndexFlatIP(data.dim)
        index.add(items)
        index_spec = IndexSpec(kind="flat", factory="Flat", exact=True, recall_at_10=1.0)
        faiss.write_index(index, str(folder / index_spec.file))
    data.write_common_files(folder)
    parameters = (data.n_users + data.n_items) * data.dim
    return _manifest(
        folder,
        bundle,
        version,
        role,
        family,
        data,
        constructor={"dim": data.dim},
        dim=data.dim,
        parameters=parameters,
        score_function="inner_product" if factorised else "learned",
        onnx=spec,
        index=index_spec,
        teacher="tests/teacher" if role == "student" else None,
    )


def write_bundle(
    models_dir: Path,
    bundle: str,
    family: str = "mf",
    role: str = "student",
    version: str | None = None,
    data: TinyData | None = None,
    members: tuple[tuple[str, float], ...] = (("mf", 1.0), ("neumf", 2.0)),
) -> Path:
    """Writes ``models_dir/bundle/version`` (``family`` "ensemble" for an ensemble of ``members``) and points LATEST at it."""
    data, version = data or TinyData(), version or new_version()
    folder = Path(models_dir) / bundle / version
    if family == "ensemble":
        folder.mkdir(parents=True, exist_ok=True)
        parts = [write_model_version(folder / MEMBERS_DIR / str(i), f"{bundle}.m{i}", version, fam, "teacher", data) for i, (fam, _) in enumerate(members)]
        data.write_common_files(folder)
        _manifest(
            folder,
            bundle,
            version,
            "ensemble",
            "ensemble",
            data,
            constructor={"members": [p.family for p in parts]},
            dim=None,
            parameters=sum(p.parameters for p in parts),
            score_function="rank_aggregation",
            ensemble=EnsembleSpec(
                members=[EnsembleMember(path=f"{MEMBERS_DIR}/{i}", weight=w) for i, (_, w) in enumerate(members)], temperature=10.0, list_length=20
            ),
        )
    else:
        write_model_version(folder, bundle, version, family, role, data)
    write_latest(folder.parent, version)
    return folder
