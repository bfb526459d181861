"""The side-by-side training benchmark's accounting and adapters: training pairs per library, the
tables handed to the evaluator (implicit's item-bias column, RecBole's id mapping), the shared
evaluation schedule, and the idle-vs-loaded benchmark's summary. The library adapters themselves
run only where RecBole / implicit are installed (they are optional)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from distillrec.benchmarks.peer_adapters import implicit_tables, pairs_per_epoch, rows_in_order, write_recbole_atomic_files
from distillrec.benchmarks.peers import NumpyScorer, Tracker, targets
from distillrec.benchmarks.train_load import default_env, summarise
from training.data.dataset import Dataset


def test_pairs_per_epoch_per_library():
    assert pairs_per_epoch("distillrec-fused", 1000, 4) == 4000
    assert pairs_per_epoch("distillrec-torch", 1000, 4) == 4000
    assert pairs_per_epoch("recbole", 1000, 1) == 1000
    assert pairs_per_epoch("implicit", 1000, skipped=120) == 880  # skipped samples update nothing
    with pytest.raises(ValueError, match="unknown library"):
        pairs_per_epoch("lightfm", 10)


def _implicit_like(n_users=5, n_items=7, f=3, seed=0):
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_users, f + 1)).astype(np.float32)
    U[:, f] = 1.0
    U[2] = 0.0  # a user without interactions: implicit zeroes the whole row
    I = rng.normal(size=(n_items, f + 1)).astype(np.float32)
    return U, I


def test_implicit_tables_score_latent_product_plus_item_bias():
    U, I = _implicit_like()
    Ut, It = implicit_tables(U, I)
    f = U.shape[1] - 1
    expected = U[:, :f] @ I[:, :f].T + I[:, f][None, :]
    expected[2] = 0.0
    np.testing.assert_allclose(NumpyScorer(Ut, It).score_all(np.arange(len(U))), expected, rtol=1e-5, atol=1e-6)


def test_implicit_tables_reject_tables_without_the_bias_column():
    U, I = _implicit_like()
    with pytest.raises(ValueError, match="item-bias"):
        implicit_tables(U[:, :-1], I[:, :-1])
    with pytest.raises(ValueError, match="columns"):
        implicit_tables(U, I[:, :-1])


def test_rows_in_order_maps_library_ids_to_our_indices():
    table = np.arange(12, dtype=np.float32).reshape(6, 2)  # row 0: the library's padding id
    ids = np.array([3, 1, 5])  # our index 0 is its id 3, ...
    np.testing.assert_array_equal(rows_in_order(table, ids), table[[3, 1, 5]])
    with pytest.raises(ValueError, match="one-to-one"):
        rows_in_order(table, np.array([1, 1, 2]))
    with pytest.raises(ValueError, match="one-to-one"):
        rows_in_order(table, np.array([1, 6]))


def test_write_atomic_files_hold_every_interaction(tmp_path):
    train = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
    write_recbole_atomic_files(tmp_path, "split", {"train": train})
    lines = (tmp_path / "split" / "split.train.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token"
    assert sorted(lines[1:]) == ["0\t0", "0\t2", "1\t1"]


def test_tracker_keeps_the_best_epoch_and_counts_training_time_up_to_it():
    values = iter([0.1, 0.3, 0.2, 0.25, 0.29])
    tracker = Tracker(lambda U, I: next(values), patience=3)
    U = np.zeros((2, 2), dtype=np.float32)
    stops = [tracker(s, 100, U + e, U) for e, s in enumerate([1.0, 2.0, 3.0, 4.0, 5.0])]
    assert stops == [False, False, False, False, True]  # three epochs without beating epoch 1
    summary = tracker.summary()
    assert summary["best_epoch"] == 1 and summary["seconds_to_best"] == 3.0 and summary["train_seconds"] == 15.0
    assert summary["pairs_per_second"] == 100 / 3.0
    assert tracker.best_tables is not None and tracker.best_tables[0][0, 0] == 1.0  # a copy of epoch 1's tables


def test_targets_compare_each_distillrec_loop_with_the_peers():
    rows = {
        "distillrec-fused": {"pairs_per_second": 10e6, "seconds_to_best": 4.0, "test_ndcg@10": 0.070},
        "recbole": {"pairs_per_second": 0.2e6, "seconds_to_best": 50.0, "test_ndcg@10": 0.072},
        "implicit": {"pairs_per_second": 16e6, "seconds_to_best": 1.0, "test_ndcg@10": 0.06},
    }
    checks = targets(rows)
    assert checks["distillrec-fused more pairs/s than recbole"] and checks["distillrec-fused sooner to best than recbole"]
    assert not checks["distillrec-fused higher test NDCG@10 than recbole"]
    assert not checks["distillrec-fused pairs/s within 1.5x of implicit"]  # 16 M > 1.5 × 10 M


def test_train_load_summary_and_default_environment(monkeypatch):
    runs = {
        ("a.yaml", "idle"): [{"median": 1.0, "threads": 2}, {"median": 1.2, "threads": 2}, {"median": 0.9, "threads": 2}],
        ("a.yaml", "loaded"): [{"median": 2.5, "threads": 2}, {"median": 1.5, "threads": 2}, {"median": 1.8, "threads": 2}],
    }
    (row,) = summarise(runs)
    assert row["idle_seconds"] == 1.0 and row["loaded_seconds"] == 1.8 and row["ratio"] == pytest.approx(1.8)
    assert row["threads_idle"] == [2] and row["threads_loaded"] == [2]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PATH_FOR_TEST", "kept")
    env = default_env()
    assert "OMP_NUM_THREADS" not in env and env["PATH_FOR_TEST"] == "kept"


def _tiny_dataset(n_users=30, n_items=40, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    train = [(u, i) for u in range(n_users) for i in rng.choice(n_items, 6, replace=False)]
    users, items = map(np.array, zip(*train))
    held = rng.integers(0, n_items, size=(2, n_users))
    return Dataset.from_indices(
        "tiny",
        np.arange(n_users).astype(str),
        np.arange(n_items).astype(str),
        (users, items),
        (np.arange(n_users), held[0]),
        (np.arange(n_users), held[1]),
        "loo-random",
    )


def test_implicit_adapter_hands_the_evaluator_implicits_own_scores():
    implicit_bpr = pytest.importorskip("implicit.cpu.bpr", reason="implicit is optional (pip install 'distillrec[peers]')")
    from distillrec.benchmarks.peer_adapters import train_implicit

    ds = _tiny_dataset()
    seen = []
    settings = train_implicit(
        ds, {"dim": 4, "lr": 0.05, "regularization": 0.01, "epochs": 50, "seed": 0}, lambda s, p, U, I: seen.append((p, U.copy(), I.copy())) or len(seen) == 3
    )
    assert len(seen) == 3 and settings["optimizer"] == "SGD"  # stopped when asked
    assert all(0 < p <= ds.train.nnz for p, _, _ in seen)
    model = implicit_bpr.BayesianPersonalizedRanking(factors=4, iterations=2, num_threads=1, random_state=0)
    model.fit(sp.csr_matrix(ds.train, dtype=np.float32), show_progress=False)
    U, I = implicit_tables(model.user_factors, model.item_factors)
    ids, scores = model.recommend(0, sp.csr_matrix(ds.train[0], dtype=np.float32), N=5, filter_already_liked_items=False)
    np.testing.assert_allclose(scores, (U[0] @ I.T)[ids], rtol=1e-5)


def test_a_missing_peer_library_names_the_install_command(monkeypatch):
    from distillrec.benchmarks import peer_adapters

    monkeypatch.setitem(sys.modules, "implicit.cpu.bpr", None)  # as if implicit were not installed
    with pytest.raises(SystemExit, match=r"distillrec\[peers\]"):
        peer_adapters.train_implicit(_tiny_dataset(), {"dim": 4, "lr": 0.05, "regularization": 0.01, "epochs": 1, "seed": 0}, lambda *a: True)
