"""Checkpoints without pickles: tensors in an ``.npz`` (loaded with ``allow_pickle=False``) plus JSON metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from training.atomic import savez_atomic

META_KEY = "__meta__"


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor | np.ndarray], meta: dict) -> Path:
    """Writes tensors and JSON-able metadata atomically (temporary file, then rename)."""
    arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in tensors.items()}
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return savez_atomic(path, **arrays)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Reads a checkpoint written by :func:`save_checkpoint` → (tensors, meta)."""
    with np.load(Path(path), allow_pickle=False) as npz:
        meta = json.loads(npz[META_KEY].tobytes().decode())
        tensors = {k: torch.from_numpy(npz[k].copy()) for k in npz.files if k != META_KEY}
    return tensors, meta


def flatten_state(prefix: str, state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Splits a (nested) torch state dict into tensors (flat dotted keys) and a JSON skeleton."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node, key):
        if isinstance(node, torch.Tensor):
            tensors[key] = node
            return {"__tensor__": key}
        if isinstance(node, dict):
            return {"__dict__": [[str(k), type(k).__name__, walk(v, f"{key}.{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(node)]}
        return node

    return tensors, walk(state, prefix)


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {(int(k) if t == "int" else k): unflatten_state(v, tensors) for k, t, v in skeleton["__dict__"]}
    if isinstance(skeleton, dict) and "__list__" in skeleton:
        return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
    return skeleton
