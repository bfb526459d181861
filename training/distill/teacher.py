"""What the KD methods get from a trained teacher run, computed once and cached on disk.

:class:`TeacherArtifacts` is the single-teacher implementation of the duck-typed teacher interface
every method receives as ``ctx.teacher`` (an ensemble teacher provides the same methods):

* ``user_topn(n)`` → int64 [n_users, n]: each user's n best items, best first, **training items
  excluded** (docs/methods.md#pitfalls, item 13), ``-1`` padding when a user has fewer than n unobserved items;
* ``item_topn(n)`` → int64 [n_items, n]: each item's n best users, training pairs excluded;
* ``embeddings()`` → (user float32 [U, d_t], item float32 [I, d_t]): the teacher's representations;
* ``score_candidates(users [b], items [b, c])`` → float32 [b, c]: teacher scores (CD's soft labels).

Lists and embeddings are cached as ``.npz`` files (no pickles) in ``<teacher run>/kd-cache/``,
keyed by the kind, n, the data fingerprint and the sha256 of the teacher's checkpoint
(``best.ckpt.npz``), so they are computed once per trained teacher and reused by every student,
epoch and experiment; a teacher retrained into the same folder never serves its predecessor's
lists. A cached list of a larger n serves smaller requests.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from training.atomic import savez_atomic
from training.checkpoint import load_checkpoint
from training.data.dataset import Dataset
from training.errors import DistillrecError
from training.run_folder import RunFolder

CACHE_DIR = "kd-cache"
_USER_CHUNK_SCORES = 1 << 23  # scores per chunk (32 MB of float32)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


class TeacherArtifacts:
    """Lazy, disk-cached teacher inputs of one finished teacher run (see the module docstring).

    Args:
        run_path: a finished run folder (``config.yaml``, ``best.ckpt.npz``, ``result.json``).
        dataset: the student's dataset; it must be the teacher's data and split (same fingerprint).
        device: torch device for the one-off teacher scoring.
    """

    def __init__(self, run_path: str | Path, dataset: Dataset | None = None, device: str = "cpu"):
        from training.runs import load_run

        self.path = Path(run_path)
        best = RunFolder(self.path).best
        if dataset is not None and best.exists():  # before load_run, whose own check would blame the teacher's config
            trained_on = load_checkpoint(best)[1].get("data_fingerprint")
            if trained_on != dataset.fingerprint():
                raise DistillrecError(
                    f"{self.path}: the teacher was trained on different data than the student's config describes "
                    f"(data fingerprint {str(trained_on)[:12]}… vs {dataset.fingerprint()[:12]}…). Distil from a teacher trained "
                    "on the student's data and split: compare the `data:` sections of both configs."
                )
        self._run = load_run(self.path, dataset=dataset)
        self.dataset = self._run.dataset
        self.model = self._run.model.to(device)
        self.model.eval()
        self.device = device
        self.cache = self.path / CACHE_DIR
        checkpoint = hashlib.sha256(RunFolder(self.path).best.read_bytes()).hexdigest()
        self.cache_key = hashlib.sha256(f"{self.fingerprint}:{checkpoint}".encode()).hexdigest()
        self._memo: dict[tuple, object] = {}
        self._reps: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------ reference
    def ref(self) -> dict:
        """Provenance for result.json: where the teacher is, what it is, how good it is."""
        result = self._run.result
        return {
            "path": str(self.path),
            "name": result.get("name"),
            "model": result.get("model"),
            "best_epoch": result.get("best_epoch"),
            "test": result.get("test"),
            "data_fingerprint": self.dataset.fingerprint(),
        }

    @property
    def fingerprint(self) -> str:
        return self.dataset.fingerprint()

    # ---------------------------------------------------------------------------------- cache
    def _cache_file(self, kind: str, n: int | None = None) -> Path:
        tag = f"-n{n}" if n is not None else ""
        return self.cache / f"{kind}{tag}-{self.cache_key[:16]}.npz"

    def _cached_list(self, kind: str, n: int) -> np.ndarray | None:
        """A cached list of width ≥ n for this data, sliced to n (None when there is none)."""
        if not self.cache.is_dir():
            return None
        pattern = re.compile(rf"^{kind}-n(\d+)-{self.cache_key[:16]}\.npz$")
        widths = sorted(int(m.group(1)) for f in self.cache.iterdir() if (m := pattern.match(f.name)))
        for width in widths:
            if width >= n:
                data = _load_npz(self._cache_file(kind, width))
                if str(data.get("key")) != self.cache_key:
                    continue
                return np.ascontiguousarray(data["lists"][:, :n])
        return None

    def _get_list(self, kind: str, n: int, compute) -> np.ndarray:
        if n < 1:
            raise ValueError(f"{kind}: n must be >= 1, got {n}")
        key = (kind, n)
        if key not in self._memo:
            lists = self._cached_list(kind, n)
            if lists is None:
                lists = compute(n)
                savez_atomic(self._cache_file(kind, n), lists=lists, key=np.array(self.cache_key))
            self._memo[key] = lists
        return self._memo[key]

    # ----------------------------------------------------------------------------- interface
    def _representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reps is None:
            with torch.no_grad():
                u, i = self.model.representations()
                self._reps = (u.detach(), i.detach())
        return self._reps

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(user [U, d_t], item [I, d_t]) float32: the teacher's representations (cached on disk)."""
        if "emb" not in self._memo:
            path = self._cache_file("embeddings")
            if path.exists() and str(_load_npz(path).get("key")) == self.cache_key:
                data = _load_npz(path)
            else:
                u, i = self._representations()
                data = {"user": u.cpu().numpy().astype(np.float32), "item": i.cpu().numpy().astype(np.float32)}
                savez_atomic(path, **data, key=np.array(self.cache_key))
            self._memo["emb"] = (data["user"], data["item"])
        return self._memo["emb"]

    def user_topn(self, n: int) -> np.ndarray:
        """int64 [U, n]: each user's n best unobserved items, best first, -1 padding."""
        return self._get_list("user_topn", n, self._compute_user_topn)

    def item_topn(self, n: int) -> np.ndarray:
        """int64 [I, n]: each item's n best users among those who have not interacted with it, -1 padding."""
        return self._get_list("item_topn", n, self._compute_item_topn)

    def score_candidates(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float32 [b, c]: teacher scores of users[b] against items[b, c]."""
        with torch.no_grad():
            u = torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.device)
            i = torch.as_tensor(np.asarray(items), dtype=torch.long, device=self.device)
            return self.model.score_candidates(u, i, reps=self._representations()).cpu().numpy().astype(np.float32)

    # ---------------------------------------------------------------------------- computing
    def _score_chunks(self):
        """Yields (user indices [b], masked scores [b, I]) with training items at −∞."""
        train = self.dataset.train
        n_users, n_items = train.shape
        step = max(1, _USER_CHUNK_SCORES // max(1, n_items))
        reps = self._representations()
        for start in range(0, n_users, step):
            users = np.arange(start, min(n_users, start + step))
            with torch.no_grad():
                scores = self.model.score_all(torch.as_tensor(users, device=self.device), reps=reps).float().cpu()
            sub = train[users]
            rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
            scores[torch.as_tensor(rows), torch.as_tensor(sub.indices.astype(np.int64))] = -torch.inf
            yield users, scores

    def _compute_user_topn(self, n: int) -> np.ndarray:
        n_users, n_items = self.dataset.train.shape
        out = np.full((n_users, n), -1, dtype=np.int64)
        k = min(n, n_items)
        for users, scores in self._score_chunks():
            vals, idx = torch.topk(scores, k, dim=1)
            idx[torch.isneginf(vals)] = -1
            out[users, :k] = idx.numpy()
        return out

    def _compute_item_topn(self, n: int) -> np.ndarray:
        n_users, n_items = self.dataset.train.shape
        k = min(n, n_users)
        best_vals = torch.full((0, n_items), -torch.inf)
        best_users = torch.zeros((0, n_items), dtype=torch.long)
        for users, scores in self._score_chunks():
            vals = torch.cat([best_vals, scores])
            cand = torch.cat([best_users, torch.as_tensor(users).unsqueeze(1).expand(-1, n_items)])
            kk = min(k, vals.shape[0])
            best_vals, pos = torch.topk(vals, kk, dim=0)
            best_users = torch.gather(cand, 0, pos)
        best_users[torch.isneginf(best_vals)] = -1
        out = np.full((n_items, n), -1, dtype=np.int64)
        out[:, :k] = best_users.T.numpy()
        return out


def describe_cache(run_path: str | Path) -> list[dict]:
    """The cached files of a teacher run (for logs and the CLI)."""
    folder = Path(run_path) / CACHE_DIR
    if not folder.is_dir():
        return []
    return [{"file": f.name, "bytes": f.stat().st_size} for f in sorted(folder.glob("*.npz"))]


__all__ = ["CACHE_DIR", "TeacherArtifacts", "describe_cache"]
