"""Every model family: the three scoring paths agree; LightGCN propagation matches a dense computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import ModelConfig
from training.models import MODELS, build_model, model_from_config


@pytest.mark.parametrize("family", sorted(MODELS))
def test_scoring_paths_agree(family, tiny_dataset):
    torch.manual_seed(0)
    model = model_from_config(ModelConfig(family=family, dim=8, layers=2, init_std=0.1), tiny_dataset.n_users, tiny_dataset.n_items, tiny_dataset.train)
    model.eval()
    users = torch.tensor([0, 3, 7])
    items = torch.tensor([[1, 2, 5], [0, 4, 9], [11, 3, 3]])
    with torch.no_grad():
        all_scores = model.score_all(users)
        cand = model.score_candidates(users, items)
        pairs = model.score_pairs(users.repeat_interleave(3), items.reshape(-1)).reshape(3, 3)
    assert all_scores.shape == (3, tiny_dataset.n_items)
    torch.testing.assert_close(cand, torch.gather(all_scores, 1, items), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pairs, cand, rtol=1e-5, atol=1e-6)
    rebuilt = build_model(**model.constructor_args())
    assert rebuilt.num_parameters() == model.num_parameters()


def test_mf_parameter_count():
    assert build_model("mf", 10, 20, 4).num_parameters() == (10 + 20) * 4


def test_lightgcn_matches_dense_propagation(tiny_dataset):
    model = model_from_config(ModelConfig(family="lightgcn", dim=4, layers=2), tiny_dataset.n_users, tiny_dataset.n_items, tiny_dataset.train)
    r = tiny_dataset.train.toarray()
    nu = r.shape[0]
    a = np.block([[np.zeros((nu, nu)), r], [r.T, np.zeros((r.shape[1], r.shape[1]))]])
    d = a.sum(1)
    d_inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1)), 0)
    norm = d_inv[:, None] * a * d_inv[None, :]
    e0 = model.embedding.weight.detach().numpy().astype(np.float64)
    final = (e0 + norm @ e0 + norm @ norm @ e0) / 3
    u, i = model.representations()
    np.testing.assert_allclose(u.detach().numpy(), final[:nu], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(i.detach().numpy(), final[nu:], rtol=1e-4, atol=1e-6)


def test_neumf_score_all_chunks_consistently():
    torch.manual_seed(0)
    model = build_model("neumf", 5, 3000, 64, layers=3)  # forces several chunks
    users = torch.arange(5)
    with torch.no_grad():
        full = model.score_all(users)
        one = torch.stack([model.score_all(users[k : k + 1])[0] for k in range(5)])
    torch.testing.assert_close(full, one)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("grads", ["both", "anchor", "table"])
def test_gather_dot_matches_einsum_values_and_gradients(dtype, grads):
    from training.models.gather_dot import gather_dot

    torch.manual_seed(0)
    anchor, table = torch.randn(3, 4, dtype=dtype), torch.randn(6, 4, dtype=dtype)
    cand = torch.tensor([[0, 5, 5, 2], [1, 1, 1, 0], [4, 3, 2, 5]])  # duplicates within and across rows
    weights = torch.randn(3, 8, dtype=dtype)[:, ::2]  # a strided upstream gradient
    results = []
    for fn in (lambda a, t: gather_dot(a, t, cand), lambda a, t: torch.einsum("bd,bcd->bc", a, t[cand])):
        a, t = anchor.clone().requires_grad_(grads != "table"), table.clone().requires_grad_(grads != "anchor")
        scores = fn(a, t)
        (scores * weights).sum().backward()
        results.append((scores.detach(), a.grad, t.grad))
    for got, expected in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(got, expected)
    with torch.no_grad():
        torch.testing.assert_close(gather_dot(anchor, table, cand), results[1][0])


def test_gather_dot_rejects_out_of_range_candidates_and_mismatched_shapes():
    from training.models.gather_dot import gather_dot

    anchor, table = torch.randn(2, 3), torch.randn(4, 3)
    for bad in (4, -1):
        with pytest.raises(IndexError, match="outside the table"):
            gather_dot(anchor, table, torch.tensor([[0, bad], [1, 2]]))
    with pytest.raises(ValueError, match="do not fit"):
        gather_dot(anchor, table, torch.tensor([[0, 1]]))  # one candidate row for two anchors


def test_kernels_compile_without_a_writable_cache(monkeypatch):
    """numba raises at decoration when it finds no place to cache; the kernels then compile uncached."""
    import importlib.util

    import numba.core.caching
    import numpy as np

    import training.kernels

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    spec = importlib.util.spec_from_file_location("kernels_without_cache", training.kernels.__file__)
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    out = np.zeros((1, 2), dtype=np.float32)
    kernels.gather_dot_forward(np.ones((1, 3), np.float32), np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[1, 0]]), out)
    assert out.tolist() == [[12.0, 3.0]]


def test_kernels_never_use_a_cache_others_can_write(monkeypatch, tmp_path):
    """numba's cache files are pickles: a folder writable by others is ignored (compiled without a cache)."""
    import importlib.util

    import numpy as np

    import training.kernels

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(shared))
    spec = importlib.util.spec_from_file_location("kernels_shared_cache", training.kernels.__file__)
    kernels = importlib.util.module_from_spec(spec)
    with pytest.warns(UserWarning, match="not private"):
        spec.loader.exec_module(kernels)
    assert kernels._CACHE_DIR is None and type(kernels.gather_dot_forward._cache).__name__ == "NullCache"
    out = np.zeros((1, 2), dtype=np.float32)
    kernels.gather_dot_forward(np.ones((1, 3), np.float32), np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[1, 0]]), out)
    assert out.tolist() == [[12.0, 3.0]] and not any(shared.iterdir()), "nothing written to or read from the shared folder"
    private = tmp_path / "private"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(private))
    assert kernels.private_cache_dir() == str(private) and private.stat().st_mode & 0o777 == 0o700
