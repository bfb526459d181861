"""Replace a file in one step, so that a reader — or a second process writing the same report —
never sees half of it."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Writes ``data`` to a temporary file next to ``path`` (named after this process, so parallel
    writers do not share it), then renames it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


__all__ = ["write_atomic"]
