"""The ensemble teacher: rank aggregation on a hand-checkable 2-teacher case, the run-folder contract,
and the trajectories it stores for HetComp."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hetcomp_tiny import ensemble_tree, train_teachers

from service.bundle.aggregation import aggregate_lists
from training.checkpoint import save_checkpoint
from training.data.dataset import Dataset
from training.distill.teacher_protocol import EmbeddingTeacher, ItemListTeacher, Teacher, TrajectoryTeacher, require_teacher
from training.ensemble import Ensemble
from training.ensemble.build import EnsembleConfig, build_ensemble
from training.ensemble.teacher import UNLISTED_SCORE
from training.ensemble.trajectory import load_trajectory, select_checkpoints
from training.errors import ConfigError, DistillrecError
from training.evaluation import evaluate
from training.run_folder import RunFolder


class FixedScorer:
    """A member with fixed scores [n_users, n_items]."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)

    def score_all(self, users):
        return self.scores[np.asarray(users)]

    def score_candidates(self, users, items):
        return np.take_along_axis(self.scores[np.asarray(users)], items, axis=1)


def toy_dataset() -> Dataset:
    """2 users × 5 items; user 0 has seen item 4, user 1 item 0; test targets: user 0 → item 1, user 1 → item 4."""
    ids = lambda n, p: np.array([f"{p}{i}" for i in range(n)])  # noqa: E731
    return Dataset.from_indices(
        "toy",
        ids(2, "u"),
        ids(5, "i"),
        train=(np.array([0, 1]), np.array([4, 0])),
        valid=(np.array([0, 1]), np.array([2, 2])),
        test=(np.array([0, 1]), np.array([1, 4])),
        split="ratio",
    )


# Member A ranks user 0's unseen items 0 > 1 > 2 > 3, member B ranks them 1 > 2 > 0 > 3 (item 4 is seen).
A = [[5, 4, 3, 2, 9], [0, 1, 2, 3, 4]]
B = [[1, 3, 2, 0, 9], [0, 3, 2, 4, 1]]


def test_two_teachers_known_answer():
    ens = Ensemble([FixedScorer(A), FixedScorer(B)], [1.0, 1.0], temperature=10.0, list_length=3, dataset=toy_dataset())
    items, scores = ens.rank(np.array([0]), k=3)
    # importance exp(−p/10) at 0-based positions: item 0 = 1 + e^−0.2, item 1 = e^−0.1 + 1, item 2 = e^−0.2 + e^−0.1
    expected = {0: 1 + math.exp(-0.2), 1: math.exp(-0.1) + 1, 2: math.exp(-0.2) + math.exp(-0.1)}
    assert items[0].tolist() == [1, 0, 2]
    assert scores[0] == pytest.approx([expected[1], expected[0], expected[2]])
    dense = ens.score_all(np.array([0]))[0]
    assert dense[[0, 1, 2]] == pytest.approx([expected[0], expected[1], expected[2]], rel=1e-6)
    assert dense[3] == UNLISTED_SCORE and dense[4] == UNLISTED_SCORE  # item 3 is in no top-3 list, 4 is seen
    assert ens.user_topn(3)[0].tolist() == [1, 0, 2]
    assert 4 not in ens.user_topn(4)[0]  # seen items never come back


def test_weights_change_the_order():
    ens = Ensemble([FixedScorer(A), FixedScorer(B)], [3.0, 1.0], temperature=10.0, list_length=3, dataset=toy_dataset())
    # item 0: 3 + e^−0.2 = 3.82 > item 1: 3e^−0.1 + 1 = 3.71 > item 2: 3e^−0.2 + e^−0.1 = 3.36
    assert ens.rank(np.array([0]), k=3)[0][0].tolist() == [0, 1, 2]


def test_ensemble_is_evaluated_like_any_model():
    ens = Ensemble([FixedScorer(A), FixedScorer(B)], [1.0, 1.0], temperature=10.0, list_length=3, dataset=toy_dataset())
    res = evaluate(ens, ens.dataset, "test", "full", [1, 2])
    # user 0: test item 1 is first. User 1 (item 0 seen): A lists [4, 3, 2], B lists [3, 1, 2], so
    # 3 (1 + e^−0.1) > 2 (2e^−0.2) > 4 (1) > 1 (e^−0.1); with valid item 2 excluded the test item 4 is second.
    assert res.metrics["hr@1"] == pytest.approx(0.5)
    assert res.metrics["hr@2"] == pytest.approx(1.0)


def test_bad_members_are_refused():
    with pytest.raises(DistillrecError, match="weight"):
        Ensemble([FixedScorer(A)], [0.0], 10.0, 3, toy_dataset())
    with pytest.raises(DistillrecError, match="at least one"):
        Ensemble([], [], 10.0, 3, toy_dataset())


def test_checkpoint_selection_by_hand(tmp_path):
    folder = RunFolder(tmp_path)
    save_checkpoint(folder.best, {}, {"epoch": 19})
    for e in (4, 9, 14, 19):
        save_checkpoint(folder.periodic(e), {}, {"epoch": e})
    # targets f·(19+1) − 1 = 1, 5, 11 → nearest unused saved epochs 4, 9, 14 (19 is the best, not a candidate)
    picks = select_checkpoints(folder, [0.1, 0.3, 0.6])
    assert [e for e, _ in picks] == [4, 9, 14, 19]
    assert picks[-1][1] == folder.best
    with pytest.raises(DistillrecError, match="checkpoint_every"):
        select_checkpoints(folder, [0.1, 0.2, 0.3, 0.4])


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ens")
    csv, runs = train_teachers(folder)
    result = build_ensemble(EnsembleConfig.model_validate(ensemble_tree(runs)), folder / "ensemble", log=lambda *a: None)
    return folder, runs, result


def test_run_folder_contract(tiny_ensemble):
    folder, runs, result = tiny_ensemble
    spec = json.loads((folder / "ensemble" / "ensemble.json").read_text())
    assert set(spec) == {"kind", "members", "temperature", "list_length"}
    assert spec["kind"] == "ensemble" and spec["temperature"] == 10.0 and spec["list_length"] == 20
    assert [m["weight"] for m in spec["members"]] == [1.0, 1.0]
    for m, run in zip(spec["members"], runs):
        assert not m["run"].startswith("/")  # relative to the ensemble folder
        assert (folder / "ensemble" / m["run"]).resolve() == run.resolve()
    saved = json.loads((folder / "ensemble" / "result.json").read_text())
    for part in ("valid", "test"):
        assert saved[part]["protocol"] == "full" and "recall@10" in saved[part]["metrics"]
    assert saved["model"]["parameters"] == sum(m["parameters"] for m in saved["members"]) > 0
    assert len(saved["members"]) == 2 and set(saved["beats_best_member_test"]) >= {"recall@10", "ndcg@10"}


def test_loaded_ensemble_merges_member_lists(tiny_ensemble):
    folder, runs, _ = tiny_ensemble
    ens = Ensemble.load(folder / "ensemble")
    users = np.arange(ens.dataset.n_users)
    expected, _ = aggregate_lists(ens.member_lists(users, 20), 20, [1.0, 1.0], 10.0)
    assert np.array_equal(ens.user_topn(20), expected)
    seen = ens.dataset.train
    top = ens.user_topn(20)
    assert not any(set(top[u]) & set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]]) for u in users)
    # a ranking teacher, but neither item lists nor one embedding space: methods needing them say so
    assert isinstance(ens, Teacher) and isinstance(ens, TrajectoryTeacher)
    assert not isinstance(ens, ItemListTeacher) and not isinstance(ens, EmbeddingTeacher)
    with pytest.raises(ConfigError, match="'ir' needs item_topn from the teacher, which Ensemble does not provide"):
        require_teacher("ir", ens, ItemListTeacher)


def test_trajectories_are_compact_and_end_at_the_best_checkpoint(tiny_ensemble):
    folder, runs, result = tiny_ensemble
    ens = Ensemble.load(folder / "ensemble")
    for run, traj in zip(runs, ens.trajectories()):
        best = json.loads((run / "result.json").read_text())["best_epoch"]
        assert traj.epochs[-1] == best and traj.epochs == sorted(set(traj.epochs)) and len(traj.epochs) == 3
        assert traj.items.shape == (3, ens.dataset.n_users, 20)  # V × U × N, never U × I
        assert traj.observed.shape == (3, ens.dataset.train.nnz)
        # the final checkpoint's list is the converged teacher's own top-N
        member = ens.runs[runs.index(run)]
        from training.evaluation import TorchScorer, top_k_excluding

        own = top_k_excluding(TorchScorer(member.model), np.arange(ens.dataset.n_users), ens.dataset.train, 20)
        assert np.array_equal(traj.items[-1], own)
        # observed lists hold exactly each user's training items
        obs = traj.observed_lists(2)
        for u in range(3):
            row = ens.dataset.seen_items(u)
            assert sorted(obs[u][obs[u] >= 0].tolist()) == row.tolist()
    assert load_trajectory(runs[0], ens.dataset).valid  # per-checkpoint validation metrics are kept
