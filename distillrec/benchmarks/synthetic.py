"""Seeded synthetic interaction logs shaped like MovieLens, from 100 K to 20 M interactions.

Item popularity and user activity follow power laws (Zipf-like ranks: the r-th most popular item is
drawn with weight ∝ (r + 10)^−``item_exponent``; user activity ∝ (r + 10)^−``user_exponent``, with
at least ``min_per_user`` interactions per user, as MovieLens guarantees 20). Each interaction gets
a timestamp spread over a year, so the leave-one-out split by time applies. Repeated (user, item)
pairs are replaced by further draws, so a log holds as many distinct pairs as asked for.

The log is written as a Parquet (or CSV) table with columns ``user``, ``item``, ``ts`` and read back
through the same reader users' files go through (``data.source: file``).

The shapes interpolate log-linearly between MovieLens-100K (943 users, 1,682 items, 100 K
interactions) and MovieLens-20M (138,493 users, 26,744 items, 20 M); the ``wide`` variant keeps the
interactions and users of a size but spreads them over 1 M items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ML100K = (943, 1_682, 100_000)
ML20M = (138_493, 26_744, 20_000_000)
WIDE_ITEMS = 1_000_000


@dataclass(frozen=True)
class Shape:
    """How many users, items and interactions a synthetic log has."""

    name: str
    n_users: int
    n_items: int
    n_interactions: int


def shape_for(n_interactions: int, wide: bool = False) -> Shape:
    """The MovieLens-like shape with ``n_interactions`` (users and items interpolated log-linearly)."""
    t = math.log(n_interactions / ML100K[2]) / math.log(ML20M[2] / ML100K[2])
    users = round(ML100K[0] * (ML20M[0] / ML100K[0]) ** t)
    items = round(ML100K[1] * (ML20M[1] / ML100K[1]) ** t)
    users = max(10, min(users, n_interactions // 10))
    label = _label(n_interactions)
    if wide:
        return Shape(f"{label}-wide", users, WIDE_ITEMS, n_interactions)
    return Shape(label, users, max(20, items), n_interactions)


def _label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _power_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Normalised weights ∝ (rank + 10)^−exponent, assigned to the n ids in a random order."""
    w = (np.arange(n, dtype=np.float64) + 10.0) ** -exponent
    rng.shuffle(w)
    return w / w.sum()


def generate(shape: Shape, seed: int = 0, item_exponent: float = 1.0, user_exponent: float = 0.8, min_per_user: int = 5):
    """(user, item, ts) int64 arrays of a synthetic log: ``shape.n_interactions`` distinct (user, item)
    pairs (fewer only when the catalogue cannot hold them). Repeated draws of a pair are dropped and
    replaced by further draws from the same distributions."""
    rng = np.random.default_rng(seed)
    n_u, n_i, n = shape.n_users, shape.n_items, shape.n_interactions
    n = min(n, n_u * n_i)
    floor = min(min_per_user, n // n_u)
    activity = _power_weights(n_u, user_exponent, rng)
    cdf = np.cumsum(_power_weights(n_i, item_exponent, rng))
    floor_users = np.repeat(np.arange(n_u, dtype=np.int64), floor)  # every user's first draws
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n:
        extra = n - floor * n_u if not len(keys) else int((n - len(keys)) * 1.3) + 16  # repeats get dropped: draw a margin
        users = np.concatenate([floor_users, rng.choice(n_u, size=extra, p=activity).astype(np.int64)])
        items = np.minimum(np.searchsorted(cdf, rng.random(len(users)) * cdf[-1]), n_i - 1).astype(np.int64)
        keys = _first_occurrences(np.concatenate([keys, users * n_i + items]))[:n]
        floor_users = floor_users[:0]
    ts = 1_600_000_000 + rng.integers(0, 365 * 86_400, size=len(keys), dtype=np.int64)
    return keys // n_i, keys % n_i, ts


def _first_occurrences(keys: np.ndarray) -> np.ndarray:
    """``keys`` without repeats, each at its first position."""
    first = np.unique(keys, return_index=True)[1]
    first.sort()
    return keys[first]


def write_log(shape: Shape, path: str | Path, seed: int = 0) -> dict:
    """Writes the log of ``shape`` to ``path`` (``.parquet`` or ``.csv``); returns what was written."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    users, items, ts = generate(shape, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"user": users, "item": items, "ts": ts})
    if path.suffix.lower() in (".parquet", ".pq"):
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return {
        "path": str(path),
        "shape": shape.name,
        "users": int(np.count_nonzero(np.bincount(users))),
        "items": int(np.count_nonzero(np.bincount(items))),
        "interactions": int(len(users)),
        "bytes": path.stat().st_size,
    }


def cached_log(shape: Shape, path: str | Path, seed: int = 0, cache: str | Path | None = None) -> dict:
    """Makes ``path`` hold the log of ``shape``: written there, or with ``cache`` written once into
    ``cache/<shape>-seed<seed>/`` and linked from ``path`` (later runs reuse it). Returns what was written."""
    import json

    path = Path(path)
    if cache is None:
        return write_log(shape, path, seed)
    folder = Path(cache) / f"{shape.name}-seed{seed}"
    log, info = folder / "log.parquet", folder / "log.json"
    if not (log.exists() and info.exists()):
        info.parent.mkdir(parents=True, exist_ok=True)
        info.write_text(json.dumps(write_log(shape, log, seed)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.symlink_to(log.resolve())
    return {**json.loads(info.read_text()), "cached": str(log)}


def data_config(path: str | Path) -> dict:
    """The ``data`` section that reads a written log with leave-one-out by time."""
    return {"source": "file", "path": str(path), "user_col": "user", "item_col": "item", "timestamp_col": "ts", "split": "loo", "min_user_interactions": 3}
