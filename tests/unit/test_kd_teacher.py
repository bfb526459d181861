"""Teacher artifacts: lists match a brute-force ranking, exclude training pairs, and are cached once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kd_support import train_tiny_teacher

from training.data.splits import leave_one_out
from training.distill.teacher import TeacherArtifacts
from training.errors import DistillrecError


@pytest.fixture(scope="module")
def teacher(tiny_dataset, tmp_path_factory):
    return train_tiny_teacher(tiny_dataset, tmp_path_factory.mktemp("kd-teacher") / "teacher")


def _brute_scores(teacher):
    with torch.no_grad():
        u, i = teacher.model.representations()
    return (u @ i.T).detach().numpy()


def test_user_topn_is_the_ranking_of_unobserved_items(teacher, tiny_dataset):
    scores = _brute_scores(teacher)
    train = tiny_dataset.train.toarray() > 0
    top = teacher.user_topn(10)
    assert top.shape == (tiny_dataset.n_users, 10) and top.dtype == np.int64
    for u in range(tiny_dataset.n_users):
        assert not train[u, top[u]].any()
        allowed = np.flatnonzero(~train[u])
        expected = allowed[np.argsort(-scores[u, allowed], kind="stable")][:10]
        np.testing.assert_allclose(scores[u, top[u]], scores[u, expected], rtol=1e-6)  # same scores (ties may swap)


def test_item_topn_is_the_ranking_of_unobserved_users(teacher, tiny_dataset):
    scores = _brute_scores(teacher).T
    train = tiny_dataset.train.toarray().T > 0
    top = teacher.item_topn(7)
    assert top.shape == (tiny_dataset.n_items, 7)
    for i in range(tiny_dataset.n_items):
        assert not train[i, top[i]].any()
        allowed = np.flatnonzero(~train[i])
        expected = allowed[np.argsort(-scores[i, allowed], kind="stable")][:7]
        np.testing.assert_allclose(scores[i, top[i]], scores[i, expected], rtol=1e-6)


def test_lists_longer_than_the_unobserved_set_are_padded(teacher, tiny_dataset):
    top = teacher.user_topn(100)  # 48 items, 7–8 of them seen: at most 41 real entries
    unobserved = tiny_dataset.n_items - np.diff(tiny_dataset.train.indptr)
    np.testing.assert_array_equal((top >= 0).sum(1), unobserved)
    assert (top[:, 45:] == -1).all()


def test_lists_and_embeddings_are_cached_on_disk(teacher, tiny_dataset, monkeypatch):
    teacher.user_topn(150)  # wider than any list computed before: computed and cached
    teacher.embeddings()
    files = {f.name for f in (teacher.path / "kd-cache").iterdir()}
    fp = teacher.cache_key[:16]
    assert f"user_topn-n150-{fp}.npz" in files and f"embeddings-{fp}.npz" in files
    fresh = TeacherArtifacts(teacher.path, tiny_dataset)

    def boom(*args):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(fresh, "_compute_user_topn", boom)
    monkeypatch.setattr(fresh, "_representations", boom)
    np.testing.assert_array_equal(fresh.user_topn(150), teacher.user_topn(150))
    np.testing.assert_array_equal(fresh.user_topn(5), teacher.user_topn(150)[:, :5])  # a wider cached list serves
    u, i = fresh.embeddings()
    assert u.dtype == np.float32 and u.shape == (tiny_dataset.n_users, 16) and i.shape == (tiny_dataset.n_items, 16)


def test_teacher_on_other_data_is_refused(teacher):
    from conftest import clustered_interactions

    other = leave_one_out(clustered_interactions(seed=5), "other", seed=0)
    with pytest.raises(DistillrecError, match="the teacher was trained on different data than the student.s config describes.*data:"):
        TeacherArtifacts(teacher.path, other)


def test_ref_records_provenance(teacher, tiny_dataset):
    ref = teacher.ref()
    assert ref["path"] == str(teacher.path) and ref["model"]["dim"] == 16
    assert ref["data_fingerprint"] == tiny_dataset.fingerprint() and "metrics" in ref["test"]
