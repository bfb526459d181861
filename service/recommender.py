"""The recommenders the service runs: plain classes over onnxruntime + FAISS + numpy (no torch, no web).

* :class:`FactorisedRecommender` (MF, LightGCN): the ONNX user tower gives the user vector, the FAISS
  index finds the items with the largest inner product.
* :class:`ScorerRecommender` (NeuMF): the ONNX scorer scores the user against every item.
* :class:`EnsembleRecommender`: each member produces its top-``list_length`` list and the lists are
  merged with :func:`service.bundle.aggregation.aggregate_lists` (the same function training uses).

All share :class:`Recommender`, which maps external ids to indices, applies the exclusions (seen
items, explicit exclude lists) and the popularity fallback, and never returns an invalid, padding
or excluded item, nor fewer than min(k, eligible) items.

Users unknown to the model (``recommend_for_history``):

* factorised models **fold the history in** as the mean of its item vectors,
  ``u = (1/|H|) Σ_{i∈H} q_i``, and search the index with it. On MovieLens-100K (BPR-MF, dim 20,
  each user's training items as history) this keeps HR@10 at 0.118 against 0.129 with the learned
  user vectors; ridge / implicit-ALS least-squares fold-ins scored 0.07–0.11 (docs/service.md);
* scorer models (NeuMF) use **item-kNN over the model's item vectors**: score(j) = Σ_{i∈H} cos(q_i,
  q_j), which is one inner-product search of Σ_{i∈H} q̂_i over the normalised vectors;
* ensembles merge their members' history lists.

``similar_items`` ranks items by the cosine of their item vectors (ensembles: members' lists merged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from service.bundle.aggregation import aggregate_lists
from service.bundle.artifacts import Manifest
from service.errors import InvalidRequest, UnknownItem, UnknownUser
from service.provenance import teacher_info
from service.scoring_gate import scoring_slot

EMPTY = np.zeros(0, dtype=np.int64)
#: (user, item) pairs × dimension per ONNX scorer call: bounds the activations of one call (about
#: ten tensors of that many floats for NeuMF) to about 20 MB, whatever the batch size
SCORER_BUDGET = 1 << 19
#: factorised models keep their user tower's output for every user in memory up to this size
#: (users × dimension × 4 bytes, e.g. 138,000 users at dimension 200 take 110 MB); larger ones run
#: the ONNX graph per request
USER_TABLE_MAX_BYTES = 256 << 20
#: users per ONNX run when the table is computed at load
USER_TABLE_CHUNK = 4096


@dataclass(frozen=True)
class Ranked:
    """One ranked list: item indices int64 [n] best first and their scores float [n] (n ≤ k)."""

    items: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Recommendation:
    """A ranked list with external ids: ``items`` is [(item_id, score)], best first."""

    user_id: str | None
    items: list[tuple[str, float]]
    fallback_used: bool = False


@dataclass(frozen=True)
class BundleData:
    """The arrays every bundle carries (see ``service.bundle.artifacts``)."""

    user_ids: np.ndarray  # str [n_users]
    item_ids: np.ndarray  # str [n_items]
    seen_indptr: np.ndarray  # int64 [n_users + 1]
    seen_indices: np.ndarray  # int64 [nnz]
    popularity: np.ndarray  # int64 [n_items]


def top_k(scores: np.ndarray, k: int) -> Ranked:
    """The ``k`` best entries of ``scores`` [n] that are not −inf (excluded), ties by smaller index."""
    n_ok = int(np.count_nonzero(scores > -np.inf))
    kk = min(k, n_ok)
    if kk <= 0:
        return Ranked(EMPTY, np.zeros(0))
    part = np.argpartition(-scores, kk - 1)[:kk] if kk < len(scores) else np.arange(len(scores))
    part = part[scores[part] > -np.inf]
    order = np.lexsort((part, -scores[part]))
    sel = part[order]
    return Ranked(sel.astype(np.int64), scores[sel].astype(np.float64))


def flat_vectors(index) -> np.ndarray | None:
    """float32 [n, d]: a read-only view of the vectors an exact inner-product flat index holds (FAISS's
    own storage, not a copy: valid while ``index`` lives and is not added to), or None for other indexes."""
    if not isinstance(index, faiss.IndexFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    view = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    view.flags.writeable = False
    return view


def flat_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Ranked]:
    """Exact inner-product :func:`top_k` of ``queries`` [b, d] among the rows of ``vectors`` [n, d],
    items ``excluded[r]`` removed from row r.

    Each query is one matrix-vector product, so a user's answer is the same alone or in a batch.
    """
    out = []
    for q, e in zip(queries.astype(np.float32, copy=False), excluded):
        row = vectors @ q
        if len(e):
            row[e] = -np.inf
        out.append(top_k(row, k))
    return out


def pad_lists(ranked: Sequence[Ranked], length: int) -> np.ndarray:
    """int64 [len(ranked), length] item lists, padded with −1 (the padding ``aggregate_lists`` expects)."""
    out = np.full((len(ranked), length), -1, dtype=np.int64)
    for r, lst in enumerate(ranked):
        n = min(length, len(lst.items))
        out[r, :n] = lst.items[:n]
    return out


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class Recommender:
    """One served bundle: ids, exclusions, fallback and the public operations (external ids in and out).

    Subclasses implement the three rankers on indices: :meth:`rank_users`, :meth:`rank_history`,
    :meth:`rank_similar`, each taking per-list excluded item indices.
    """

    def __init__(self, name: str, manifest: Manifest, data: BundleData):
        self.name, self.manifest = name, manifest
        self.version, self.role, self.family = manifest.version, manifest.role, manifest.family
        self.data = data
        self.n_users, self.n_items = len(data.user_ids), len(data.item_ids)
        self._user_index = {u: i for i, u in enumerate(data.user_ids.tolist())}
        self._item_index = {it: i for i, it in enumerate(data.item_ids.tolist())}
        self._item_ids_list = data.item_ids.tolist()
        self._popular_order = np.lexsort((np.arange(self.n_items), -data.popularity)).astype(np.int64)

    # ---------------------------------------------------------------- to implement per kind
    def rank_users(self, users: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Ranked]:
        """Top-``k`` lists for user indices ``users`` [b], item indices ``excluded[r]`` removed from row r."""
        raise NotImplementedError

    def rank_history(self, history: np.ndarray, k: int, excluded: np.ndarray) -> Ranked:
        """Top-``k`` for a user the model has never seen, given the item indices they interacted with."""
        raise NotImplementedError

    def rank_similar(self, item: int, k: int, excluded: np.ndarray) -> Ranked:
        """The ``k`` items most similar to ``item`` (never ``item`` itself)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ id handling
    def item_index(self, item_id: str) -> int:
        i = self._item_index.get(item_id)
        if i is None:
            raise UnknownItem(f"item {item_id!r} is not known to model '{self.name}' (it has {self.n_items} items).")
        return i

    def item_indices(self, item_ids: Sequence[str], strict: bool) -> np.ndarray:
        """Indices of ``item_ids``; unknown ids raise :class:`UnknownItem` (``strict``) or are dropped."""
        idx = [self._item_index.get(i) for i in item_ids]
        if strict and None in idx:
            unknown = [i for i, j in zip(item_ids, idx) if j is None]
            shown = ", ".join(repr(u) for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise UnknownItem(f"item(s) {shown} not known to model '{self.name}'. Remove them from the request.", details={"unknown_item_ids": unknown[:100]})
        return np.fromiter((j for j in idx if j is not None), dtype=np.int64)

    def seen(self, user: int) -> np.ndarray:
        """Training items of user index ``user`` (int64 indices)."""
        return self.data.seen_indices[self.data.seen_indptr[user] : self.data.seen_indptr[user + 1]]

    def _excluded(self, user: int, exclude_seen: bool, extra: np.ndarray) -> np.ndarray:
        if not exclude_seen:
            return extra
        seen = self.seen(user)
        return np.concatenate([seen, extra]) if len(extra) else seen

    def _named(self, user_id: str | None, ranked: Ranked, fallback: bool = False) -> Recommendation:
        ids = self._item_ids_list
        return Recommendation(user_id, [(ids[i], s) for i, s in zip(ranked.items.tolist(), ranked.scores.tolist())], fallback)

    def popular(self, k: int, excluded: np.ndarray) -> Ranked:
        """The ``k`` most popular training items not in ``excluded``; scores are interaction counts."""
        order = self._popular_order[: k + len(excluded)]
        if len(excluded):
            order = order[~np.isin(order, excluded)]
        order = order[:k]
        return Ranked(order, self.data.popularity[order].astype(np.float64))

    # ----------------------------------------------------------------- public operations
    def recommend(self, user_id: str, k: int, exclude_seen: bool = True, exclude_items: Sequence[str] = (), fallback: str = "none") -> Recommendation:
        """Top-``k`` for a known user; unknown users get the popularity fallback if asked, else :class:`UnknownUser`."""
        u = self._user_index.get(user_id)
        if u is None or k < 1:
            return self.recommend_many([user_id], k, exclude_seen, exclude_items, fallback)[0]
        extra = self.item_indices(exclude_items, strict=False) if exclude_items else EMPTY
        users = np.array([u], dtype=np.int64)
        return self._named(user_id, self.rank_users(users, k, [self._excluded(u, exclude_seen, extra)])[0])

    def recommend_many(
        self, user_ids: Sequence[str], k: int, exclude_seen: bool = True, exclude_items: Sequence[str] = (), fallback: str = "none"
    ) -> list[Recommendation]:
        """:meth:`recommend` for many users in one ranking call (unknown ids in ``exclude_items`` are ignored)."""
        if k < 1:
            raise InvalidRequest(f"k must be at least 1, got {k}.")
        extra = self.item_indices(exclude_items, strict=False) if exclude_items else EMPTY
        idx = [self._user_index.get(u) for u in user_ids]
        unknown = [u for u, i in zip(user_ids, idx) if i is None]
        if unknown and fallback != "popular":
            shown = ", ".join(repr(u) for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise UnknownUser(
                f"user(s) {shown} not known to model '{self.name}'. Use /v1/recommend/history with their item ids, or fallback='popular'.",
                details={"unknown_user_ids": unknown[:100]},
            )
        known = [(pos, i) for pos, i in enumerate(idx) if i is not None]
        out: list[Recommendation | None] = [None] * len(user_ids)
        if known:
            users = np.fromiter((i for _, i in known), dtype=np.int64, count=len(known))
            ranked = self.rank_users(users, k, [self._excluded(int(u), exclude_seen, extra) for u in users])
            for (pos, _), r in zip(known, ranked):
                out[pos] = self._named(user_ids[pos], r)
        if unknown:
            pop = self._named(None, self.popular(k, extra), fallback=True)
            for pos, i in enumerate(idx):
                if i is None:
                    out[pos] = Recommendation(user_ids[pos], pop.items, True)
        return out  # type: ignore[return-value]

    def recommend_for_history(self, item_ids: Sequence[str], k: int, exclude_items: Sequence[str] = ()) -> Recommendation:
        """Top-``k`` for a user unknown to the model, from the items they interacted with (those are excluded)."""
        history = np.unique(self.item_indices(item_ids, strict=True))
        if len(history) == 0:
            raise InvalidRequest("item_ids must name at least one item.")
        extra = self.item_indices(exclude_items, strict=False) if exclude_items else EMPTY
        return self._named(None, self.rank_history(history, k, np.concatenate([history, extra])))

    def similar_items(self, item_id: str, k: int) -> Recommendation:
        """The ``k`` items most similar to ``item_id`` (never itself)."""
        item = self.item_index(item_id)
        return self._named(None, self.rank_similar(item, k, np.array([item], dtype=np.int64)))

    def warm_up(self, n: int) -> None:
        """Runs each code path a few times (allocations, caches) so the first requests are not slow."""
        n = max(1, min(n, self.n_users))
        users = self.data.user_ids[:n].tolist()
        for u in users:
            self.recommend(u, 10)
        self.recommend_many(users, 10)
        self.recommend_for_history(self.data.item_ids[:3].tolist(), 10)
        self.similar_items(str(self.data.item_ids[0]), 10)

    def describe(self) -> dict[str, Any]:
        """What ``/v1/models/{name}`` shows."""
        m = self.manifest
        return {
            "name": self.name,
            "version": m.version,
            "role": m.role,
            "family": m.family,
            "dimension": m.dim,
            "parameters": m.parameters,
            "score_function": m.score_function,
            "users": self.n_users,
            "items": self.n_items,
            "index": m.index.model_dump() if m.index else None,
            "onnx": {"kind": m.onnx.kind, "opset": m.onnx.opset, "max_abs_diff": m.onnx.max_abs_diff} if m.onnx else None,
            "ensemble": m.ensemble.model_dump() if m.ensemble else None,
            "metrics": m.metrics,
            "select": m.select,
            "data": m.data.model_dump(),
            "teacher": teacher_info(m.teacher),
            "kd": m.kd,
            "created_at": m.created_at,
        }


class _VectorRecommender(Recommender):
    """Common to single models: item vectors [n_items, d] and a cosine (normalised inner product) index."""

    def __init__(self, name: str, manifest: Manifest, data: BundleData, session, item_vectors: np.ndarray):
        super().__init__(name, manifest, data)
        self.session = session
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.cosine_index = faiss.IndexFlatIP(self.item_vectors.shape[1])
        self.cosine_index.add(normalised(self.item_vectors))
        # id(index) → (index, a view of its vectors) for the exact flat indexes; the entry keeps the
        # index alive, so the view stays valid and the id is not reused
        self._flat: dict[int, tuple[object, np.ndarray]] = {}
        self._register_flat(self.cosine_index)

    def _register_flat(self, index) -> None:
        """Scores ``index`` with :func:`flat_top_k` when it is an exact inner-product flat index."""
        vectors = flat_vectors(index)
        if vectors is not None:
            self._flat[id(index)] = (index, vectors)

    def _mask(self, excluded: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.n_items, dtype=bool)
        mask[excluded] = True
        return mask

    def _search(self, index, queries: np.ndarray, k: int, excluded: Sequence[np.ndarray], exact: bool, vectors: np.ndarray) -> list[Ranked]:
        """Top-``k`` of ``index`` for queries [b, d] with per-row exclusions.

        An exact flat index is scored in numpy over its own vectors (:func:`flat_top_k`: one matrix
        product, no heap of ``k + |excluded|`` entries). Other indexes search ``k + |excluded|``
        results so that k eligible items remain; an approximate index that comes back short falls
        back to exact scoring.
        """
        flat = self._flat.get(id(index))
        if flat is not None:
            return flat_top_k(flat[1], queries, k, excluded)
        extra = max(map(len, excluded), default=0)
        kk = min(self.n_items, k + extra)
        scores, items = index.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
        out = []
        for q, d, i, e in zip(queries, scores, items, excluded):
            if len(e):
                mask = self._mask(e)
                keep = ~mask[i] if exact else (i >= 0) & ~mask[np.maximum(i, 0)]  # exact: never -1 padding
                i, d = i[keep], d[keep]
            elif not exact:
                i, d = i[i >= 0], d[i >= 0]
            i, d = i[:k], d[:k]
            if not exact and len(i) < min(k, self.n_items - (int(np.count_nonzero(mask)) if len(e) else 0)):
                full = (vectors @ np.asarray(q, dtype=np.float32)).astype(np.float64)
                if len(e):
                    full[e] = -np.inf
                out.append(top_k(full, k))
            else:
                out.append(Ranked(i, d))
        return out

    def rank_similar(self, item: int, k: int, excluded: np.ndarray) -> Ranked:
        q = normalised(self.item_vectors[item : item + 1])
        return self._search(self.cosine_index, q, k, [excluded], True, self.item_vectors)[0]


class FactorisedRecommender(_VectorRecommender):
    """score(u, i) = <user tower(u), item vector i>, searched in the bundle's FAISS index."""

    def __init__(self, name: str, manifest: Manifest, data: BundleData, session, index, item_vectors: np.ndarray):
        super().__init__(name, manifest, data, session, item_vectors)
        self.index = index
        self.exact = bool(manifest.index and manifest.index.exact)
        self._register_flat(index)
        self._input = session.get_inputs()[0].name
        self._output = [session.get_outputs()[0].name]
        self.user_table = self._tower_table()

    def tower(self, users: np.ndarray) -> np.ndarray:
        """float32 [b, d]: the ONNX user tower run on user indices ``users`` [b] (int64)."""
        return self.session.run(self._output, {self._input: users})[0]

    def _tower_table(self) -> np.ndarray | None:
        """The user tower's output for every user, computed once by the graph itself (in chunks), or
        None when it would exceed ``USER_TABLE_MAX_BYTES`` or when a row differs from a one-user run
        (a graph whose output depends on the rest of the batch); then every request runs the graph."""
        dim = self.manifest.dim or 0
        if self.n_users * dim * 4 > USER_TABLE_MAX_BYTES:
            return None
        table = np.empty((self.n_users, dim), dtype=np.float32)
        for s in range(0, self.n_users, USER_TABLE_CHUNK):
            table[s : s + USER_TABLE_CHUNK] = self.tower(np.arange(s, min(s + USER_TABLE_CHUNK, self.n_users), dtype=np.int64))
        probe = np.unique([0, self.n_users // 2, self.n_users - 1]).astype(np.int64)
        if any(not np.array_equal(self.tower(probe[i : i + 1])[0], table[u]) for i, u in enumerate(probe)):
            return None
        return table

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """float32 [b, d]: the user tower's output for user indices ``users`` [b] (int64), read from
        the table computed at load when there is one."""
        return self.user_table[users] if self.user_table is not None else self.tower(users)

    def rank_users(self, users: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Ranked]:
        return self._search(self.index, self.user_vectors(users), k, excluded, self.exact, self.item_vectors)

    def rank_history(self, history: np.ndarray, k: int, excluded: np.ndarray) -> Ranked:
        folded = self.item_vectors[history].mean(axis=0, keepdims=True)  # fold-in: mean of item vectors
        return self._search(self.index, folded, k, [excluded], self.exact, self.item_vectors)[0]


class ScorerRecommender(_VectorRecommender):
    """A learned scorer (NeuMF): the ONNX graph scores users [b] × items [b, n_items]; exact top-k in numpy."""

    def __init__(self, name: str, manifest: Manifest, data: BundleData, session, item_vectors: np.ndarray):
        super().__init__(name, manifest, data, session, item_vectors)
        self._all_items = np.arange(self.n_items, dtype=np.int64)[None, :]
        self._inputs = [i.name for i in session.get_inputs()]
        self._output = [session.get_outputs()[0].name]

    def scores(self, users: np.ndarray) -> np.ndarray:
        """float32 [b, n_items]: every item scored for user indices ``users`` [b]."""
        users = np.ascontiguousarray(users, dtype=np.int64)
        if len(users) == 1:  # one small call: runs inline, never waits for a scoring slot
            return self.session.run(self._output, {self._inputs[0]: users, self._inputs[1]: self._all_items})[0]
        step = max(1, SCORER_BUDGET // (self.n_items * max(1, self.manifest.dim or 1)))
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        for s in range(0, len(users), step):
            u = users[s : s + step]
            items = np.repeat(self._all_items, len(u), axis=0)
            with scoring_slot():
                out[s : s + len(u)] = self.session.run(self._output, {self._inputs[0]: u, self._inputs[1]: items})[0]
        return out

    def rank_users(self, users: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Ranked]:
        out = []
        for row, e in zip(self.scores(users), excluded):
            row = row.astype(np.float64)
            if len(e):
                row[e] = -np.inf
            out.append(top_k(row, k))
        return out

    def rank_history(self, history: np.ndarray, k: int, excluded: np.ndarray) -> Ranked:
        # item-kNN: Σ_{i∈H} cos(q_i, q_j) = <Σ_{i∈H} q̂_i, q̂_j>, one search over the normalised vectors
        query = normalised(self.item_vectors[history]).sum(axis=0, keepdims=True)
        return self._search(self.cosine_index, query, k, [excluded], True, self.item_vectors)[0]


class EnsembleRecommender(Recommender):
    """Rank aggregation of member recommenders (``service.bundle.aggregation.aggregate_lists``)."""

    def __init__(self, name: str, manifest: Manifest, data: BundleData, members: list[Recommender]):
        super().__init__(name, manifest, data)
        spec = manifest.ensemble
        assert spec is not None, "Manifest validation requires an 'ensemble' section of ensembles"
        self.members = members
        self.weights = [m.weight for m in spec.members]
        self.temperature, self.list_length = spec.temperature, spec.list_length

    def _merge(self, per_member: list[list[Ranked]], k: int) -> list[Ranked]:
        length = max(self.list_length, k)
        lists = [pad_lists(ranked, length) for ranked in per_member]
        items, scores = aggregate_lists(lists, k, self.weights, self.temperature)
        keep = items >= 0
        return [Ranked(items[r][keep[r]], scores[r][keep[r]]) for r in range(items.shape[0])]

    def _length(self, k: int) -> int:
        # members contribute their top-list_length (or top-k when k is larger, so k items always come back)
        return max(self.list_length, k)

    def rank_users(self, users: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Ranked]:
        n = self._length(k)
        return self._merge([m.rank_users(users, n, excluded) for m in self.members], k)

    def rank_history(self, history: np.ndarray, k: int, excluded: np.ndarray) -> Ranked:
        n = self._length(k)
        return self._merge([[m.rank_history(history, n, excluded)] for m in self.members], k)[0]

    def rank_similar(self, item: int, k: int, excluded: np.ndarray) -> Ranked:
        n = self._length(k)
        return self._merge([[m.rank_similar(item, n, excluded)] for m in self.members], k)[0]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["members"] = [
            {
                "family": m.family,
                "role": m.role,
                "dimension": m.manifest.dim,
                "parameters": m.manifest.parameters,
                "index": m.manifest.index.model_dump() if m.manifest.index else None,
            }
            for m in self.members
        ]
        return out
