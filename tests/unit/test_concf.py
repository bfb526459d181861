"""ConCF: golden values of its head losses, consensus and weight balancing; conformance; the train
command runs it; the export keeps the target head only and the service serves it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from kd_support import check_method_conformance, tiny_batch

from training.config import config_from_dict
from training.distill.base import KDContext
from training.distill.concf import ConCF, gradnorm_step
from training.distill.concf_heads import (
    Head,
    bce_loss,
    bpr_loss,
    cml_loss,
    mse_loss,
    multinomial_loss,
)
from training.distill.consensus import (
    consensus_lists,
    consensus_scores,
    list_metrics,
    ranks_in,
    top_n_excluding,
)
from training.distill.registry import build_method
from training.errors import ConfigError
from training.models import model_from_config


# ------------------------------------------------------------------------------- head losses
def test_head_losses_golden():
    t = torch.tensor
    # −log σ(1 − 0) − log σ(1 − 0.5) = log(1 + e^−1) + log(1 + e^−0.5)
    assert bpr_loss(t([1.0]), t([[0.0, 0.5]])).item() == pytest.approx(0.313262 + 0.474077, abs=1e-5)
    # scores are −d²: max(0, 1 + 0.25 − 1) + max(0, 1 + 0.25 − 2) = 0.25
    assert cml_loss(t([-0.25]), t([[-1.0, -2.0]])).item() == pytest.approx(0.25)
    assert bce_loss(t([0.0]), t([[0.0]])).item() == pytest.approx(2 * math.log(2))
    assert mse_loss(t([0.5]), t([[0.5, -1.0]])).item() == pytest.approx(0.25 + 0.25 + 1.0)
    # softmax([0, ln 3]) = [1/4, 3/4]; the logit 100 is clamped to 40
    assert multinomial_loss(t([[0.0, math.log(3)]]), t([0]), t([0])).item() == pytest.approx(math.log(4), abs=1e-6)
    assert multinomial_loss(t([[100.0, 0.0]]), t([0]), t([1])).item() == pytest.approx(40.0, abs=1e-4)


def test_head_scores_share_one_form():
    torch.manual_seed(0)
    u, i = torch.randn(3, 8), torch.randn(5, 8)
    cml = Head("cml", 8)
    pu, pi = cml.project(u), cml.project(i)
    assert (pu.norm(dim=-1) <= 1 + 1e-6).all()
    assert torch.allclose(cml.matrix(pu, pi), -(torch.cdist(pu, pi) ** 2), atol=1e-5)
    bce = Head("bce", 8)
    with torch.no_grad():
        bce.a.copy_(torch.arange(2.0)), bce.b.fill_(0.5)
    pu, pi = bce.project(u), bce.project(i)
    assert torch.allclose(bce.matrix(pu, pi), (pu * torch.arange(2.0)) @ pi.T + 0.5, atol=1e-6)
    cand = torch.tensor([[4, 0], [1, 1], [2, 3]])
    for head in (cml, bce, Head("bpr", 8)):
        pu, pi = head.project(u), head.project(i)
        full = head.matrix(pu, pi)
        assert torch.allclose(head.candidates(pu, pi, cand), full.gather(1, cand), atol=1e-5)
        assert torch.allclose(head.pairs(pu, pi[:3]), full.diagonal()[:3], atol=1e-5)
    assert Head("cml", 8).ranking_scores(torch.tensor([-0.5, -9.0])).tolist() == [-5.0, -40.0]


# --------------------------------------------------------------------------------- consensus
def test_consensus_score_golden():
    # ranks [heads 2, snapshots 2, rows 1, candidates 2]; N = 100
    ranks = np.array([[[[0, 5]], [[2, 100]]], [[[1, 3]], [[1, 3]]]])
    c = consensus_scores(ranks, 100)
    # item 0: head 0 rank 2, σ = std(0, 2) = 1; head 1 rank 1, σ = 0.  item 1: head 0 has it at 100 (never top)
    assert c[0, 0] == pytest.approx(math.exp(-0.2) + math.exp(-0.01) + math.exp(-0.1) + 1.0)
    assert c[0, 1] == pytest.approx(math.exp(-0.3) + 1.0)
    assert c[0, 0] == pytest.approx(3.713618, abs=1e-6) and c[0, 1] == pytest.approx(1.740818, abs=1e-6)


def test_ranks_in_and_consensus_list_golden():
    assert ranks_in(np.array([[4, 1, 2]]), np.array([[1, 2, 3, -1]]), 6).tolist() == [[1, 2, 3, 3]]
    head0, head1 = np.array([[4, 1, 2]]), np.array([[1, 5, 4]])
    lists, scores = consensus_lists([[head0], [head1]], n_items=6, n_top=3)
    # c(1) = (e^−.1 + 1) + 2 = 3.905, c(4) = 2 + (e^−.2 + 1) = 3.819, c(5) = e^−.1 + 1 = 1.905, c(2) = e^−.2 + 1 = 1.819
    assert lists.tolist() == [[1, 4, 5]]
    assert scores[0].tolist() == pytest.approx([math.exp(-0.1) + 3, math.exp(-0.2) + 3, math.exp(-0.1) + 1])


def test_consistency_breaks_a_tie_of_ranks():
    stable = [np.array([[1, 0, 2]])] * 2
    moved = [np.array([[2, 1, 0]]), np.array([[0, 1, 2]])]  # item 0 jumped from rank 2 to 0 (σ = 1), item 1 stayed
    lists, scores = consensus_lists([stable, moved], n_items=3, n_top=3)
    # ranks tie (items 0 and 1 are first in one head and second in the other); σ decides: c(1) − c(0) = 1 − e^−0.01
    assert lists[0, :2].tolist() == [1, 0]
    assert scores[0, 0] - scores[0, 1] == pytest.approx(1 - math.exp(-0.01))


def test_top_n_excludes_training_items_in_any_chunking(monkeypatch):
    from training.distill import consensus

    scores = torch.tensor([[5.0, 4, 3, 2, 1], [1, 2, 3, 4, 5], [0, 0, 9, 0, 0]])
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 0]], dtype=np.float32))
    full = top_n_excluding(lambda rows: scores[torch.from_numpy(rows)], train, 2)
    assert full.tolist() == [[1, 2], [3, 2], [4, -1]]
    monkeypatch.setattr(consensus, "CHUNK_BUDGET", 5)  # one user per chunk
    assert top_n_excluding(lambda rows: scores[torch.from_numpy(rows)], train, 2).tolist() == full.tolist()


def test_list_metrics_drop_the_other_part_first():
    targets = sp.csr_matrix(np.array([[0, 1, 0, 0]], dtype=np.float32))
    other = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    m = list_metrics(np.array([[3, 0, 1]]), targets, other, [1, 2])
    assert m["recall@1"] == 0 and m["recall@2"] == 1 and m["ndcg@2"] == pytest.approx(1 / math.log2(3), abs=1e-5)


# --------------------------------------------------------------------------------- balancing
def test_gradnorm_step_golden():
    # G = w·g = [3, 1], target mean(G) = 2 → w − 0.1·sign(G − 2)·g/mean(g) = [0.85, 1.05] → ×2/1.9
    w = gradnorm_step(torch.ones(2), torch.tensor([3.0, 1.0]), torch.ones(2), 0.15, 0.1)
    assert w.tolist() == pytest.approx([0.85 * 2 / 1.9, 1.05 * 2 / 1.9])
    big = gradnorm_step(torch.ones(2), torch.tensor([3.0, 1.0]), torch.ones(2), 0.15, 10.0)
    assert big.min().item() == pytest.approx(0.01) and big.max().item() == pytest.approx(2.0, abs=1e-6)
    # a head whose loss fell less (ratio 2 vs 1) gets a larger target: with equal G it gains weight
    w = gradnorm_step(torch.ones(2), torch.ones(2), torch.tensor([2.0, 1.0]), 0.15, 0.1)
    assert w[0] > 1 > w[1] and w.sum().item() == pytest.approx(2.0)


# ------------------------------------------------------------------------------- the method
def test_concf_conformance_for_factorised_students(tiny_dataset):
    for family in ("mf", "lightgcn"):
        check_method_conformance("concf", family, tiny_dataset, None)


def _setup(dataset, family="mf", **params):
    cfg = config_from_dict({"model": {"family": family, "dim": 8, "layers": 1, "init_std": 0.1}})
    student = model_from_config(cfg.model, dataset.n_users, dataset.n_items, dataset.train)
    method = build_method({"name": "concf", "period": 1, "queue": 2, "top_n": 6, **params})
    method.setup(KDContext(dataset, student, None, np.random.default_rng(0), max_epochs=5))
    return student, method


def test_consensus_starts_when_the_queues_are_full_and_switches(tiny_dataset):
    student, method = _setup(tiny_dataset)
    batch = tiny_batch(tiny_dataset, np.random.default_rng(1))
    method.on_epoch_start(1, student)
    assert method.consensus is None and "cl" not in method(batch, student, student.representations())
    method.on_epoch_start(2, student)
    lists = method.consensus.numpy()
    assert lists.shape == (tiny_dataset.n_users, 6)
    train = tiny_dataset.train
    for u in range(tiny_dataset.n_users):  # never a training item, never twice
        row = lists[u][lists[u] >= 0]
        assert len(set(row.tolist())) == len(row) and not set(row.tolist()) & set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
    state = method.log_state()
    assert set(state["heads_valid"]) == {"bpr", "cml", "bce", "mse", "multinomial", "item_multinomial"} and "recall@50" in state["consensus_test"]
    w0 = method.w.clone()
    assert "cl" in method(batch, student, student.representations())
    assert not torch.equal(method.w, w0) and method.w.sum().item() == pytest.approx(6.0, abs=1e-4)

    _, fixed = _setup(tiny_dataset, consensus_learning=False, balancing="fixed")
    fixed.on_epoch_start(1, student), fixed.on_epoch_start(2, student)
    terms = fixed(batch, student, student.representations())
    assert "cl" not in terms and torch.equal(fixed.w, torch.ones(6))


def test_concf_rejects_a_non_factorised_student(tiny_dataset):
    with pytest.raises(ConfigError, match="factorised"):
        _setup(tiny_dataset, family="neumf")
    with pytest.raises(ConfigError, match="balancing"):
        build_method({"name": "concf", "balancing": "uniform"})
    assert isinstance(build_method({"name": "concf"}), ConCF)


def test_with_a_tower_student_the_target_head_scores_the_tower_and_the_others_the_embeddings(tiny_dataset):
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"family": "mf", "dim": 8, "init_std": 0.1, "tower": "mlp", "dropout": 0.1}})
    student = model_from_config(cfg.model, tiny_dataset.n_users, tiny_dataset.n_items)
    method = build_method({"name": "concf", "period": 1, "queue": 1, "top_n": 6})
    method.setup(KDContext(tiny_dataset, student, None, np.random.default_rng(0), max_epochs=5))
    student.eval()
    reps = student.representations()
    views = method.views(student, reps)
    assert views[0] is reps and reps[0].shape[1] == 2
    assert all(v[0] is student.user_emb.weight and v[1] is student.item_emb.weight for v in views[1:])

    batch = tiny_batch(tiny_dataset, np.random.default_rng(1))
    losses = method.head_losses(batch, views)
    u, i = reps
    expected = bpr_loss((u[batch.users] * i[batch.pos]).sum(-1), torch.einsum("bd,bnd->bn", u[batch.users], i[batch.neg]))
    assert losses[0].item() == pytest.approx(expected.item(), rel=1e-5)

    method.on_epoch_start(1, student)  # the target head's snapshot ranks by the tower's scores
    scores = (u @ i.T).detach()
    train = tiny_dataset.train
    for user in range(tiny_dataset.n_users):
        row = scores[user].clone()
        row[train.indices[train.indptr[user] : train.indptr[user + 1]]] = -torch.inf
        assert method.queues[0].snapshots()[-1][user].tolist() == torch.topk(row, 6).indices.tolist()

    student.train()
    terms = method(batch, student, student.representations())  # balancing: gradient norms at the embeddings
    assert "cl" in terms and method.w.sum().item() == pytest.approx(6.0, abs=1e-4)
    sum(terms.values()).backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in student.parameters())


# --------------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("dataset", ["citeulike", "ml100k"])
def test_the_shipped_concf_configs_train_the_model_singlecf_trains(dataset):
    """The comparison is fair only if ConCF's config is SingleCF's plus the method: same data, model,
    optimiser, sampling and evaluation (the method computes the target head's BPR loss itself)."""
    from pathlib import Path

    from training.config import load_config

    folder = Path(__file__).resolve().parents[2] / "configs" / "concf"
    single = load_config(folder / f"{dataset}-singlecf.yaml")
    concf = load_config(folder / f"{dataset}-concf.yaml")
    assert single.distill is None and concf.distill is not None
    assert [m["name"] for m in concf.distill.methods] == ["concf"]
    for section in ("data", "model", "eval"):
        assert getattr(concf, section) == getattr(single, section), section
    assert concf.train.model_copy(update={"base_loss_weight": single.train.base_loss_weight}) == single.train
    assert concf.train.base_loss_weight == 0
