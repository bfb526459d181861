"""The teacher reference of a student bundle, as ``/v1/models`` shows it: an object, without paths.

Bundles record the teacher run a student was distilled from as a string: a JSON object (name,
model, best epoch, test metrics, data fingerprint and the run folder's path) or, from older
exports, the run folder's path alone. Server paths are not for the public API, so the path is
dropped (a bare path becomes the run folder's name).
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

#: keys of the teacher reference that hold local paths
PATH_KEYS = frozenset({"path", "run", "checkpoint"})


def teacher_info(ref: str | None) -> dict[str, Any] | None:
    """The public form of a manifest's ``teacher`` field."""
    if not ref:
        return None
    try:
        obj = json.loads(ref)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        return {k: v for k, v in obj.items() if k not in PATH_KEYS}
    return {"name": PurePath(ref.strip()).name[:128] or None}
