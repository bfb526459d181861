"""A raw interaction log (before id mapping and splitting) and the filters applied to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.errors import DataError


@dataclass
class Interactions:
    """Parallel arrays, one row per interaction. Ids are external strings.

    ``rating`` and ``timestamp`` are float64 arrays or None when the source has no such column.
    ``origin`` names the file(s) the rows came from, for error messages.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None
    origin: str

    def __len__(self) -> int:
        return len(self.user)

    def take(self, mask_or_index: np.ndarray) -> Interactions:
        return Interactions(
            user=self.user[mask_or_index],
            item=self.item[mask_or_index],
            rating=None if self.rating is None else self.rating[mask_or_index],
            timestamp=None if self.timestamp is None else self.timestamp[mask_or_index],
            origin=self.origin,
        )


def _require_rows(data: Interactions, step: str, hint: str) -> Interactions:
    if len(data) == 0:
        raise DataError(f"{data.origin}: no interactions are left after {step}. {hint}")
    return data


def filter_min_rating(data: Interactions, min_rating: float | None) -> Interactions:
    """Keeps interactions with rating >= min_rating (no-op when min_rating is None)."""
    if min_rating is None:
        return data
    if data.rating is None:
        raise DataError(f"{data.origin}: data.min_rating={min_rating} is set but the data has no rating column; set data.rating_col or remove data.min_rating.")
    return _require_rows(
        data.take(data.rating >= min_rating),
        f"keeping ratings >= {min_rating}",
        "Lower data.min_rating.",
    )


def deduplicate(data: Interactions) -> Interactions:
    """Keeps one row per (user, item): the latest by timestamp, else the last in file order."""
    order = np.arange(len(data))
    if data.timestamp is not None:
        order = np.lexsort((order, data.timestamp))  # by time, ties by file order
    d = data.take(order)
    u = np.unique(d.user, return_inverse=True)[1].ravel().astype(np.int64)
    items, i = np.unique(d.item, return_inverse=True)
    key = u * len(items) + i.ravel()  # one integer per (user, item): no string concatenation
    # np.unique returns the first occurrence; reverse to keep the last one.
    _, first_in_reversed = np.unique(key[::-1], return_index=True)
    keep = np.sort(len(d) - 1 - first_in_reversed)
    return d.take(keep)


def filter_kcore(data: Interactions, k_user: int, k_item: int) -> Interactions:
    """Repeatedly drops users with < k_user and items with < k_item interactions until stable."""
    if k_user <= 1 and k_item <= 1:
        return data
    while True:
        _, uinv, ucnt = np.unique(data.user, return_inverse=True, return_counts=True)
        _, iinv, icnt = np.unique(data.item, return_inverse=True, return_counts=True)
        keep = (ucnt[uinv] >= k_user) & (icnt[iinv] >= k_item)
        if keep.all():
            return data
        data = _require_rows(
            data.take(keep),
            f"the k-core filter (users >= {k_user}, items >= {k_item})",
            "Lower data.min_user_interactions / data.min_item_interactions.",
        )
