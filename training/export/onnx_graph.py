"""ONNX graphs of a trained recommender, and their self-check against torch.

* Factorised models (MF, LightGCN) export a **user tower**: ``users`` int64 [batch] → ``user_vectors``
  float32 [batch, d]. The graph holds the final user table as a constant and gathers from it; for
  LightGCN that table is the propagated one (the graph convolution runs once, at export), so serving
  never needs the interaction graph.
* Non-factorised models (NeuMF) export a **scorer**: ``users`` int64 [batch] and ``items`` int64
  [batch, candidates] → ``scores`` float32 [batch, candidates].

Both use the ``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9; the
TorchScript exporter is deprecated) with dynamic batch (and candidate) axes, offline.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from service.bundle.artifacts import OnnxSpec, TensorSpec
from training.export.errors import ExportError
from training.models.base import TrainableRecommender

DEFAULT_OPSET = 18
MAX_ABS_DIFF = 1e-4
#: the scorer self-check ranks every user against all items up to this many, else a fixed sample
SCORER_CHECK_ITEMS = 4096


class UserTower(nn.Module):
    """users [b] → rows of a constant user table [n_users, d]."""

    def __init__(self, user_table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", user_table.detach().to(torch.float32).clone().contiguous())

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(users, self.table)


class CandidateScorer(nn.Module):
    """(users [b], items [b, c]) → scores [b, c] through the model's own ``score_candidates``."""

    def __init__(self, model: TrainableRecommender):
        super().__init__()
        self.model = model

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.model.score_candidates(users, items)


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress lines and warns about optional packages; keep logs clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _dims(graph_inputs) -> list[TensorSpec]:
    """Name, element type and shape (dim_param strings for dynamic axes) of graph inputs/outputs."""
    out = []
    for v in graph_inputs:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        out.append(TensorSpec(name=v.name, dtype=onnx.TensorProto.DataType.Name(t.elem_type).lower(), shape=shape))
    return out


def export_onnx(model: TrainableRecommender, path: Path, opset: int = DEFAULT_OPSET) -> OnnxSpec:
    """Exports ``model``'s serving graph to ``path`` and runs ``onnx.checker`` (full check).

    Returns the :class:`OnnxSpec` with ``max_abs_diff`` still 0 (filled by :func:`check_parity`).
    """
    model.eval()
    if model.factorised:
        with torch.no_grad():
            users_table, _ = model.representations()
        module, kind = UserTower(users_table).eval(), "user_tower"
        args = (torch.zeros(2, dtype=torch.long),)
        names_in, names_out = ["users"], ["user_vectors"]
        dynamic = {"users": {0: torch.export.Dim("batch")}}
    else:
        module, kind = CandidateScorer(model).eval(), "scorer"
        args = (torch.zeros(2, dtype=torch.long), torch.zeros((2, 3), dtype=torch.long))
        names_in, names_out = ["users", "items"], ["scores"]
        batch = torch.export.Dim("batch")
        dynamic = {"users": {0: batch}, "items": {0: batch, 1: torch.export.Dim("candidates")}}
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                module,
                args,
                None,
                dynamo=True,
                input_names=names_in,
                output_names=names_out,
                opset_version=opset,
                dynamic_shapes=dynamic,
                verbose=False,
                optimize=True,
            )
            program.save(str(path))
    except Exception as exc:  # the exporter raises many types; the user needs to know it was this step
        raise ExportError(f"torch.onnx.export failed for the {model.family} model ({type(exc).__name__}: {exc}).") from exc
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{path}: onnx.checker rejected the exported graph: {exc}") from exc
    graph = onnx.load(str(path), load_external_data=False).graph
    inputs, outputs = _dims(graph.input), _dims(graph.output)
    if [t.name for t in inputs] != names_in or [t.name for t in outputs] != names_out:
        raise ExportError(f"{path}: unexpected graph signature {[t.name for t in inputs]} → {[t.name for t in outputs]}.")
    if not isinstance(inputs[0].shape[0], str):
        raise ExportError(f"{path}: the batch axis of '{inputs[0].name}' is not dynamic ({inputs[0].shape}).")
    return OnnxSpec(kind=kind, opset=opset, exporter=f"torch.onnx dynamo (torch {torch.__version__})", inputs=inputs, outputs=outputs, max_abs_diff=0.0)


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_parity(model: TrainableRecommender, path: Path, batch: int = 256, seed: int = 0) -> float:
    """Max |ONNX Runtime − torch| over **every** user; raises :class:`ExportError` above 1e-4.

    User towers are compared on the user vectors [n_users, d]; scorers on the scores of every user
    against all items (or, above 4096 items, a fixed sample of 4096 items).
    """
    sess = _session(path)
    model.eval()
    worst = 0.0
    with torch.no_grad():
        if model.factorised:
            table = model.representations()[0].numpy()
            for s in range(0, model.n_users, 65536):
                users = np.arange(s, min(s + 65536, model.n_users), dtype=np.int64)
                got = sess.run(None, {"users": users})[0]
                worst = max(worst, float(np.abs(got - table[users]).max(initial=0.0)))
        else:
            if model.n_items <= SCORER_CHECK_ITEMS:
                cand = np.arange(model.n_items, dtype=np.int64)
            else:
                cand = np.sort(np.random.default_rng(seed).choice(model.n_items, SCORER_CHECK_ITEMS, replace=False)).astype(np.int64)
            for s in range(0, model.n_users, batch):
                users = np.arange(s, min(s + batch, model.n_users), dtype=np.int64)
                items = np.broadcast_to(cand, (len(users), len(cand))).copy()
                got = sess.run(None, {"users": users, "items": items})[0]
                ref = model.score_candidates(torch.from_numpy(users), torch.from_numpy(items)).numpy()
                worst = max(worst, float(np.abs(got - ref).max(initial=0.0)))
    if not np.isfinite(worst) or worst > MAX_ABS_DIFF:
        raise ExportError(f"{path}: ONNX Runtime disagrees with torch by up to {worst:.3g} (limit {MAX_ABS_DIFF:g}); the bundle was not published.")
    return worst
