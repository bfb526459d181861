"""Replace a file in one step, so that a reader — or a second process writing the same file — never
sees half of it, and a failed write leaves the old file as it was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path`` (named after this process, so parallel writers do
    not share it) to write to; on success it is renamed over ``path``, on an exception removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Writes ``data`` (text or bytes) to ``path`` through :func:`replacing`."""
    with replacing(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
    return Path(path)


def savez_atomic(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` of ``arrays`` to ``path`` through :func:`replacing` (no pickles: plain arrays)."""
    with replacing(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


__all__ = ["replacing", "savez_atomic", "write_atomic"]
