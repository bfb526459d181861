"""A raw interaction log (before id mapping and splitting) and the filters applied to it."""

from __future__ import annotations

import numpy as np

from training.errors import DataError


def encode_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 codes, distinct ids as strings) of external ids (strings or integers): ``vocab[codes]`` is the ids as strings."""
    vocab, codes = np.unique(np.asarray(values), return_inverse=True)
    return codes.ravel().astype(np.int64), vocab.astype(str)


class Interactions:
    """Parallel arrays, one row per interaction, with dictionary-encoded ids.

    ``user_codes[r]`` / ``item_codes[r]`` index ``user_vocab`` / ``item_vocab``, the distinct
    external ids as strings (in no particular order; a vocabulary may hold ids no row uses after a
    filter). Constructed from external ids (``Interactions(users, items, rating, timestamp, origin)``)
    they are encoded here; readers that encode them themselves pass ``user_vocab`` / ``item_vocab``
    with the codes. ``rating`` and ``timestamp`` are float64 arrays or None when the source has no
    such column. ``origin`` names the file(s) the rows came from, for error messages.
    """

    def __init__(
        self,
        user: np.ndarray,
        item: np.ndarray,
        rating: np.ndarray | None,
        timestamp: np.ndarray | None,
        origin: str,
        user_vocab: np.ndarray | None = None,
        item_vocab: np.ndarray | None = None,
    ):
        self.user_codes: np.ndarray
        self.item_codes: np.ndarray
        self.user_codes, self.user_vocab = encode_ids(user) if user_vocab is None else (np.asarray(user, dtype=np.int64), user_vocab)
        self.item_codes, self.item_vocab = encode_ids(item) if item_vocab is None else (np.asarray(item, dtype=np.int64), item_vocab)
        self.rating, self.timestamp, self.origin = rating, timestamp, origin

    @property
    def user(self) -> np.ndarray:
        """External user id of every row (strings; materialised on each access)."""
        return self.user_vocab[self.user_codes]

    @property
    def item(self) -> np.ndarray:
        """External item id of every row (strings; materialised on each access)."""
        return self.item_vocab[self.item_codes]

    def __len__(self) -> int:
        return len(self.user_codes)

    def take(self, mask_or_index: np.ndarray) -> Interactions:
        return Interactions(
            user=self.user_codes[mask_or_index],
            item=self.item_codes[mask_or_index],
            rating=None if self.rating is None else self.rating[mask_or_index],
            timestamp=None if self.timestamp is None else self.timestamp[mask_or_index],
            origin=self.origin,
            user_vocab=self.user_vocab,
            item_vocab=self.item_vocab,
        )


def concat(parts: list[Interactions], origin: str) -> Interactions:
    """The rows of ``parts`` one after the other (ids re-encoded over the union; no ratings or timestamps)."""

    def merged(codes: list[np.ndarray], vocabs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.cumsum([0] + [len(v) for v in vocabs[:-1]])
        remap, vocab = encode_ids(np.concatenate(vocabs))
        return remap[np.concatenate([c + o for c, o in zip(codes, offsets, strict=True)])], vocab

    u, uv = merged([p.user_codes for p in parts], [p.user_vocab for p in parts])
    i, iv = merged([p.item_codes for p in parts], [p.item_vocab for p in parts])
    return Interactions(u, i, None, None, origin, user_vocab=uv, item_vocab=iv)


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
    key = d.user_codes * len(d.item_vocab) + d.item_codes  # one integer per (user, item): no string work
    # np.unique returns the first occurrence; reverse to keep the last one.
    _, first_in_reversed = np.unique(key[::-1], return_index=True)
    keep = np.sort(len(d) - 1 - first_in_reversed)
    return d.take(keep)


def filter_kcore(data: Interactions, k_user: int, k_item: int) -> Interactions:
    """Repeatedly drops users with < k_user and items with < k_item interactions until stable."""
    if k_user <= 1 and k_item <= 1:
        return data
    while True:
        ucnt = np.bincount(data.user_codes, minlength=len(data.user_vocab))
        icnt = np.bincount(data.item_codes, minlength=len(data.item_vocab))
        keep = (ucnt[data.user_codes] >= k_user) & (icnt[data.item_codes] >= k_item)
        if keep.all():
            return data
        data = _require_rows(
            data.take(keep),
            f"the k-core filter (users >= {k_user}, items >= {k_item})",
            "Lower data.min_user_interactions / data.min_item_interactions.",
        )
