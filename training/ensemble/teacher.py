"""The ensemble teacher: rank aggregation of heterogeneous recommenders (docs/methods.md#rank-aggregation, docs/hetcomp.md).

For a user, every member ranks all items it has not seen in training and contributes its top
``list_length`` items with importance ``w_m · exp(−p / T)`` at 0-based position ``p``; the
ensemble orders items by summed importance (:func:`service.bundle.aggregation.aggregate_lists`, the same
code the service runs). :class:`Ensemble` is at once

* a **scorer** (``score_all``/``score_candidates``), so it is evaluated with the same protocols as
  any model (items outside every member list get a score below every listed item), and
* a **ranking teacher** (``user_topn``), the interface the ranking KD methods use, plus
  ``trajectories()`` for HetComp.

The ensemble run folder (the contract the export/serving side builds against)::

    ensemble.json  {"kind": "ensemble", "members": [{"run": "<folder, relative to this one or absolute>",
                    "weight": 1.0}, …], "temperature": 10.0, "list_length": 100}
    result.json    offline metrics in the trainer's format (valid/test, model/parameters totals)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from service.bundle.aggregation import aggregate_lists
from training.data.dataset import Dataset
from training.errors import DistillrecError
from training.evaluation import TorchScorer, top_k_excluding
from training.runs import LoadedRun, load_run

ENSEMBLE_FILE = "ensemble.json"
UNLISTED_SCORE = -1.0  # below every aggregated importance (> 0); excluded items get −inf from the evaluator


class Ensemble:
    """Rank-aggregation ensemble of recommenders trained on the same data split.

    Args:
        scorers: one scorer per member (``score_all(users) -> [b, n_items]``; a
            :class:`~training.evaluation.TorchScorer` for a trained model).
        weights: one positive weight per member.
        temperature: T of the rank transform exp(−p / T).
        list_length: how many items each member contributes, and the length of the merged list.
        dataset: the shared data (its ``train`` matrix is the seen items every member excludes).
        runs: the member runs when loaded from run folders (parameters, trajectories, provenance).
    """

    def __init__(self, scorers: list, weights: list[float], temperature: float, list_length: int, dataset: Dataset, runs: list[LoadedRun] | None = None):
        if not scorers:
            raise DistillrecError("an ensemble needs at least one member")
        if len(weights) != len(scorers) or any(w <= 0 for w in weights):
            raise DistillrecError("an ensemble needs one positive weight per member")
        if temperature <= 0 or list_length < 1:
            raise DistillrecError("an ensemble needs temperature > 0 and list_length >= 1")
        self.runs = runs or []
        if self.runs and {r.dataset.fingerprint() for r in self.runs} != {dataset.fingerprint()}:
            names = ", ".join(str(r.path) for r in self.runs)
            raise DistillrecError(f"ensemble members must be trained on the same data split; they are not ({names}).")
        self.scorers, self.weights = list(scorers), [float(w) for w in weights]
        self.temperature, self.list_length, self.dataset = float(temperature), int(list_length), dataset
        self.n_items = dataset.n_items
        self._topn: dict[int, np.ndarray] = {}
        self._memo: dict | None = None

    def memoize_member_lists(self, on: bool = True) -> None:
        """Keep the members' lists per (users, depth) — for evaluating many weights/temperatures."""
        self._memo = {} if on else None

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, folder: str | Path, dataset: Dataset | None = None) -> Ensemble:
        """Loads an ensemble run folder (``ensemble.json``); member paths are relative to it or absolute."""
        folder = Path(folder)
        spec_path = folder / ENSEMBLE_FILE
        if not spec_path.is_file():
            raise DistillrecError(f"{folder}: not an ensemble run ({ENSEMBLE_FILE} is missing). Build it with `distillrec ensemble build`.")
        spec = json.loads(spec_path.read_text())
        if spec.get("kind") != "ensemble" or not spec.get("members"):
            raise DistillrecError(f'{spec_path}: expected {{"kind": "ensemble", "members": [...]}}.')
        paths = [resolve_member(folder, m["run"]) for m in spec["members"]]
        return cls.from_runs(paths, [m.get("weight", 1.0) for m in spec["members"]], spec.get("temperature", 10.0), spec.get("list_length", 100), dataset)

    @classmethod
    def from_runs(cls, runs: list[str | Path], weights: list[float], temperature: float, list_length: int, dataset: Dataset | None = None) -> Ensemble:
        """Loads the member run folders (the data is rebuilt once, from the first member's config)."""
        loaded: list[LoadedRun] = []
        for path in runs:
            run = load_run(path, dataset)
            dataset = dataset or run.dataset
            loaded.append(run)
        return cls([TorchScorer(r.model) for r in loaded], list(weights), temperature, list_length, dataset, runs=loaded)

    # ------------------------------------------------------------------------------ ranking
    def member_lists(self, users: np.ndarray, depth: int | None = None) -> list[np.ndarray]:
        """Each member's top-``depth`` unseen items for ``users``: a list of int64 [b, depth]."""
        depth = depth or self.list_length
        users = np.asarray(users, dtype=np.int64)
        key = (users.tobytes(), depth)
        if self._memo is not None and key in self._memo:
            return self._memo[key]
        lists = [top_k_excluding(s, users, self.dataset.train, depth) for s in self.scorers]
        if self._memo is not None:
            self._memo[key] = lists
        return lists

    def rank(self, users: np.ndarray, k: int | None = None, depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The merged lists (items int64 [b, k], importance float64 [b, k]; −1/−inf padded)."""
        depth = max(depth or self.list_length, k or 0)
        lists = self.member_lists(users, depth)
        return aggregate_lists(lists, k or depth * len(lists), self.weights, self.temperature)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """float32 [b, n_items]: aggregated importance of every listed item, ``UNLISTED_SCORE`` elsewhere."""
        users = np.asarray(users, dtype=np.int64)
        items, scores = self.rank(users)
        out = np.full((len(users), self.n_items), UNLISTED_SCORE, dtype=np.float32)
        ok = items >= 0
        out[np.nonzero(ok)[0], items[ok]] = scores[ok]
        return out

    def score_candidates(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float32 [b, c]: :meth:`score_all` gathered at ``items`` [b, c]."""
        return np.take_along_axis(self.score_all(users), np.asarray(items, dtype=np.int64), axis=1)

    # ------------------------------------------------------------------------------ teacher
    def user_topn(self, n: int) -> np.ndarray:
        """int64 [n_users, n]: every user's ensemble top-n unseen items, best first (cached).

        The same meaning as the single-model teacher's ``user_topn`` (training items excluded), so the
        ranking KD methods (RRD) distil from the ensemble unchanged.
        """
        if n not in self._topn:
            users = np.arange(self.dataset.n_users)
            out = np.empty((len(users), n), dtype=np.int64)
            step = max(1, (1 << 22) // max(1, self.n_items))
            for s in range(0, len(users), step):
                out[s : s + step] = self.rank(users[s : s + step], k=n)[0]
            self._topn[n] = out
        return self._topn[n]

    def trajectories(self):
        """The members' trajectories (``RUN/trajectory.npz``), in member order, for HetComp."""
        from training.ensemble.trajectory import load_trajectory

        if not self.runs:
            raise DistillrecError("this ensemble was not loaded from run folders, so it has no trajectories.")
        return [load_trajectory(r.path, self.dataset) for r in self.runs]

    # ------------------------------------------------------------------------------ facts
    def num_parameters(self) -> int:
        return int(sum(r.model.num_parameters() for r in self.runs))

    def describe(self) -> dict:
        """The ``model`` entry of result.json: members, weights and the parameter total."""
        return {
            "family": "ensemble",
            "members": [
                {"run": str(r.path), **r.model.constructor_args(), "parameters": r.model.num_parameters(), "weight": w} for r, w in zip(self.runs, self.weights)
            ],
            "temperature": self.temperature,
            "list_length": self.list_length,
            "parameters": self.num_parameters(),
        }


def resolve_member(folder: Path, run: str) -> Path:
    """A member path from ensemble.json: absolute, or relative to the ensemble folder."""
    p = Path(run)
    return p if p.is_absolute() else (folder / p)


def write_ensemble_json(folder: Path, runs: list[Path], weights: list[float], temperature: float, list_length: int) -> Path:
    """Writes ``ensemble.json`` with member paths relative to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    members = [{"run": os.path.relpath(Path(r).resolve(), folder.resolve()), "weight": float(w)} for r, w in zip(runs, weights)]
    spec = {"kind": "ensemble", "members": members, "temperature": float(temperature), "list_length": int(list_length)}
    path = folder / ENSEMBLE_FILE
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path
