"""Golden values of every KD loss on small hand-made tensors, computed independently with numpy.

The expected values are written out from the formulas of docs/methods.md (naive forms, float64); the
implementation uses stable, vectorised forms. Randomly drawn samples (RRD/IR/RD/CD) are read back
from the method and the loss is recomputed by hand from the student's embeddings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.dataset import Dataset
from training.distill.base import Batch, KDContext
from training.distill.common import relaxed_ranking_loss
from training.distill.experts import ExpertBank
from training.distill.registry import build_method
from training.distill.topology import entity_topology_loss, kmeans_groups
from training.models.mf import MF


# --------------------------------------------------------------------------------- fixtures
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


class FakeTeacher:
    """A duck-typed teacher from fixed numpy embeddings (top-N lists by brute force)."""

    def __init__(self, user, item, train):
        self.user, self.item, self.train = user, item, train.toarray() > 0

    def embeddings(self):
        return self.user, self.item

    def _top(self, scores, seen, n):
        scores = np.where(seen, -np.inf, scores)
        out = np.full((scores.shape[0], n), -1, dtype=np.int64)
        for r in range(scores.shape[0]):
            order = [c for c in np.argsort(-scores[r], kind="stable") if np.isfinite(scores[r, c])][:n]
            out[r, : len(order)] = order
        return out

    def user_topn(self, n):
        return self._top(self.user @ self.item.T, self.train, n)

    def item_topn(self, n):
        return self._top(self.item @ self.user.T, self.train.T, n)

    def score_candidates(self, users, items):
        return np.einsum("bd,bcd->bc", self.user[users], self.item[items]).astype(np.float32)


@pytest.fixture()
def small():
    """5 users × 12 items, a few training pairs, a fake teacher (d_t = 6) and an MF student (d_s = 3)."""
    rng = np.random.default_rng(7)
    train = [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (3, 5), (3, 6), (4, 7)]
    u, i = np.array(train).T
    ds = Dataset.from_indices(
        "golden",
        np.array([f"u{k}" for k in range(5)]),
        np.array([f"i{k}" for k in range(12)]),
        (u, i),
        (np.array([0]), np.array([8])),
        (np.array([0]), np.array([9])),
        "presplit",
    )
    teacher = FakeTeacher(rng.normal(size=(5, 6)).astype(np.float32), rng.normal(size=(12, 6)).astype(np.float32), ds.train)
    student = MF(5, 12, 3)
    with torch.no_grad():
        student.user_emb.weight.copy_(torch.as_tensor(rng.normal(size=(5, 3)), dtype=torch.float32))
        student.item_emb.weight.copy_(torch.as_tensor(rng.normal(size=(12, 3)), dtype=torch.float32))
    batch = Batch(torch.tensor([0, 1, 1, 3]), torch.tensor([1, 2, 3, 5]), torch.tensor([[9], [10], [2], [11]]), 0, 0)
    return ds, teacher, student, batch


def _setup(spec, ds, teacher, student, epoch=0):
    method = build_method(spec)
    method.setup(KDContext(ds, student, teacher, np.random.default_rng(0), max_epochs=100))
    method.on_epoch_start(epoch, student)
    return method


def _naive_listwise(ranked, rest):
    total = 0.0
    for k in range(len(ranked)):
        total -= ranked[k] - np.log(np.exp(ranked[k:]).sum() + np.exp(rest).sum())
    return total


# ------------------------------------------------------------------------ relaxed ranking
def test_relaxed_ranking_loss_golden():
    ranked, rest = [2.0, 1.0, 0.5], [0.3, -1.0]
    # −[2 − log(e²+e¹+e^.5+e^.3+e^−1)] − [1 − log(e¹+e^.5+e^.3+e^−1)] − [.5 − log(e^.5+e^.3+e^−1)]
    expected = 2.1203926929737715  # evaluated with math.exp/math.log
    assert _naive_listwise(np.array(ranked), np.array(rest)) == pytest.approx(expected, rel=1e-6)
    got = relaxed_ranking_loss(torch.tensor([ranked]), torch.tensor([rest]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_relaxed_ranking_loss_masks_and_rows_sum():
    ranked = torch.tensor([[1.5, 0.2, 9.9], [0.0, -0.5, 0.7]])
    rest = torch.tensor([[0.1, 4.0], [1.0, 2.0]])
    rmask = torch.tensor([[True, True, False], [True, True, True]])
    lmask = torch.tensor([[True, False], [True, True]])
    expected = _naive_listwise(np.array([1.5, 0.2]), np.array([0.1])) + _naive_listwise(np.array([0.0, -0.5, 0.7]), np.array([1.0, 2.0]))
    got = relaxed_ranking_loss(ranked, rest, rmask, lmask)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # no uninteresting items: plain ListMLE over the ranked list
    assert relaxed_ranking_loss(ranked[1:], rest[1:, :0]).item() == pytest.approx(_naive_listwise(np.array([0.0, -0.5, 0.7]), np.array([])), rel=1e-6)


def test_relaxed_ranking_loss_is_stable_for_huge_scores():
    ranked = torch.tensor([[1000.0, 999.0]], requires_grad=True)
    rest = torch.tensor([[998.0]])
    # shift invariance: the value equals the loss of (0, −1 | −2)
    expected = _naive_listwise(np.array([0.0, -1.0]), np.array([-2.0]))
    got = relaxed_ranking_loss(ranked, rest)
    assert got.item() == pytest.approx(expected, abs=2e-4)  # float32 resolution at 1000 is 6e-5
    got.backward()
    assert torch.isfinite(ranked.grad).all()


# --------------------------------------------------------------------------------- experts
def _np_expert(bank: ExpertBank, m: int, x: np.ndarray) -> np.ndarray:
    w1, b1 = bank.w1[m].detach().numpy(), bank.b1[m].detach().numpy()
    w2, b2 = bank.w2[m].detach().numpy(), bank.b2[m].detach().numpy()
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


@pytest.mark.parametrize("exact", [True, False])
def test_expert_mixture_golden(exact):
    torch.manual_seed(0)
    bank = ExpertBank(3, 2, 4, 5, mass=1.0 if exact else 0.999999, max_active=None if exact else 3)
    x = np.array([[0.5, -1.0], [2.0, 0.1], [-0.3, 0.3], [1.0, 1.0]], dtype=np.float32)
    s = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.4, 0.0]], dtype=np.float32)
    t = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    c = np.array([1.0, 0.5, 2.0, 1.0], dtype=np.float32)
    mixture = sum(s[:, [m]] * _np_expert(bank, m, x) for m in range(3))
    expected = (c * ((t - mixture) ** 2).sum(1)).sum()
    got = bank.loss_for_selection(torch.as_tensor(x), torch.as_tensor(t), torch.as_tensor(s), torch.as_tensor(c))
    assert got.item() == pytest.approx(float(expected), rel=1e-5)


def test_expert_sparse_truncation_renormalises():
    torch.manual_seed(1)
    bank = ExpertBank(3, 2, 4, 5, mass=0.7, max_active=2)
    x = np.array([[0.5, -1.0]], dtype=np.float32)
    s = np.array([[0.5, 0.3, 0.2]], dtype=np.float32)  # 0.5 < 0.7 → keep 2 experts: weights 0.5/0.8, 0.3/0.8
    t = np.zeros((1, 4), dtype=np.float32)
    expected = ((0.625 * _np_expert(bank, 0, x) + 0.375 * _np_expert(bank, 1, x)) ** 2).sum()
    got = bank.loss_for_selection(torch.as_tensor(x), torch.as_tensor(t), torch.as_tensor(s))
    assert got.item() == pytest.approx(float(expected), rel=1e-5)
    assert bank.stats["active_experts"] == 2 and bank.stats["kept_mass"] == pytest.approx(0.8)


@pytest.mark.parametrize("mass", [1.0, 0.9, 0.3])  # exact mixture; truncated mixture; one expert per entity
def test_expert_loss_gradients_match_autograd_of_the_definition(mass):
    torch.manual_seed(0)
    bank = ExpertBank(4, 3, 6, 5, mass=mass, max_active=None if mass == 1.0 else 2).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    t = torch.randn(7, 6, dtype=torch.float64)
    c = torch.rand(7, dtype=torch.float64) + 0.5
    logits = torch.randn(7, 4, dtype=torch.float64)
    logits[:, 3] = -30.0  # expert 3 is (almost) never selected: with truncation its gradients are exactly zero

    def reference(x, s):
        rows, experts, w = bank.pairs(s)  # the same kept pairs and renormalised weights
        out = torch.relu(torch.einsum("pd,pdh->ph", x[rows], bank.w1[experts]) + bank.b1[experts])
        out = torch.einsum("ph,phk->pk", out, bank.w2[experts]) + bank.b2[experts]
        mixture = torch.zeros_like(t).index_add(0, rows, out * w.unsqueeze(1))
        return (c * ((t - mixture) ** 2).sum(1)).sum()

    grads = []
    for fn in (lambda x, s: bank.loss_for_selection(x, t, s, c), reference):
        bank.zero_grad()
        xi, li = x.clone().requires_grad_(), logits.clone().requires_grad_()
        value = fn(xi, torch.softmax(li, dim=1))
        (0.37 * value).backward()  # a scaled loss, as the trainer's λ-weighted sum passes it
        grads.append([value.detach(), xi.grad, li.grad, *(p.grad.clone() for p in (bank.w1, bank.b1, bank.w2, bank.b2))])
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected)
    if mass < 1.0:
        assert grads[0][3][3].abs().sum() == 0 and grads[0][6][3].abs().sum() == 0


def test_expert_hard_selection_golden():
    torch.manual_seed(0)
    bank = ExpertBank(2, 3, 4, 5)
    with torch.no_grad():
        bank.gate.weight.zero_()
        bank.gate.bias.copy_(torch.tensor([50.0, -50.0]))  # α = (1, 0): always expert 0
    x = np.array([[0.1, 0.2, 0.3], [-1.0, 0.5, 2.0]], dtype=np.float32)
    t = np.array([[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 0.5, 0.5]], dtype=np.float32)
    expected = ((t - _np_expert(bank, 0, x)) ** 2).sum()
    got = bank.loss(torch.as_tensor(x), torch.as_tensor(t), tau=1e-3)
    assert got.item() == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------ latent KD
def test_de_batch_weighting_golden(small):
    ds, teacher, student, batch = small
    de = _setup({"name": "de", "experts": 1}, ds, teacher, student)
    su, si = (w.detach().numpy() for w in student.representations())
    tu, ti = teacher.embeddings()

    def err(bank, s, t):
        return ((t - _np_expert(bank, 0, s)) ** 2).sum()

    users, pos, neg = [0, 1, 3], [1, 2, 3, 5], [2, 9, 10, 11]
    expected_user = err(de.user_bank, su[users], tu[users])
    expected_item = 0.5 * (err(de.item_bank, si[pos], ti[pos]) + err(de.item_bank, si[neg], ti[neg]))
    terms = de(batch, student, student.representations())
    assert terms["user"].item() == pytest.approx(expected_user, rel=1e-5)
    assert terms["item"].item() == pytest.approx(expected_item, rel=1e-5)


def test_de_temperature_schedule(small):
    ds, teacher, student, _ = small
    de = _setup({"name": "de", "experts": 2, "anneal_epochs": 1000}, ds, teacher, student)
    for epoch, tau in [(0, 1.0), (100, 0.1), (200, 0.01), (1000, 1e-10), (2000, 1e-10)]:
        de.on_epoch_start(epoch, student)
        assert de.tau == pytest.approx(tau, rel=1e-9)


def test_fitnet_golden(small):
    ds, teacher, student, batch = small
    fit = _setup({"name": "fitnet"}, ds, teacher, student)
    su, si = (w.detach().numpy() for w in student.representations())
    tu, ti = teacher.embeddings()

    def proj(layer, x):
        return x @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()

    expected = ((tu[[0, 1, 3]] - proj(fit.user_proj, su[[0, 1, 3]])) ** 2).sum()
    expected += 0.5 * ((ti[[1, 2, 3, 5, 2, 9, 10, 11]] - proj(fit.item_proj, si[[1, 2, 3, 5, 2, 9, 10, 11]])) ** 2).sum()
    terms = fit(batch, student, student.representations())
    assert (terms["user"] + terms["item"]).item() == pytest.approx(expected, rel=1e-5)


def test_phr_golden(small):
    ds, teacher, student, batch = small
    phr = _setup({"name": "phr", "hidden": 7}, ds, teacher, student)
    su, si = (w.detach().numpy() for w in student.representations())
    tu, ti = teacher.embeddings()
    # enriched teacher view of user 1: ½ (t_u1 + mean(t_i2, t_i3)); of item 9 (no training users): t_i9
    np.testing.assert_allclose(phr.v_user[1].numpy(), 0.5 * (tu[1] + (ti[2] + ti[3]) / 2), rtol=1e-5)
    np.testing.assert_allclose(phr.v_item[9].numpy(), ti[9], rtol=1e-6)

    def bridge(net, v, s):
        l1, l2 = net[0], net[2]
        h = np.maximum(v @ l1.weight.detach().numpy().T + l1.bias.detach().numpy(), 0)
        theta = (h @ l2.weight.detach().numpy().T + l2.bias.detach().numpy()).reshape(len(v), 6, 3)
        return np.einsum("nts,ns->nt", theta, s)

    users, items = [0, 1, 3], [1, 2, 3, 5, 2, 9, 10, 11]
    expected = ((tu[users] - bridge(phr.user_net, phr.v_user[users].numpy(), su[users])) ** 2).sum()
    expected += 0.5 * ((ti[items] - bridge(phr.item_net, phr.v_item[items].numpy(), si[items])) ** 2).sum()
    terms = phr(batch, student, student.representations())
    assert (terms["user"] + terms["item"]).item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------- topology KD
def _entities(student, teacher):
    users, items = [0, 1, 3], [1, 2, 3, 5, 9, 10, 11]  # B = uniq users ∪ uniq(pos ∪ neg)
    su, si = (w.detach().numpy() for w in student.representations())
    tu, ti = teacher.embeddings()
    return np.concatenate([su[users], si[items]]), np.concatenate([tu[users], ti[items]]), users, items


def test_ftd_golden(small):
    ds, teacher, student, batch = small
    ftd = _setup({"name": "ftd"}, ds, teacher, student)
    es, et, _, _ = _entities(student, teacher)
    expected = ((_cos(et, et) - _cos(es, es)) ** 2).sum()
    assert ftd(batch, student, student.representations())[""].item() == pytest.approx(expected, rel=1e-5)


def test_entity_topology_blocks_match_brute_force():
    rng = np.random.default_rng(3)
    es, et = rng.normal(size=(23, 3)), rng.normal(size=(23, 5))
    groups = rng.integers(0, 5, size=23)
    mask = (groups[:, None] == groups[None, :]) & (_cos(et, et) > 0)
    expected = (((_cos(es, es) - _cos(et, et)) ** 2) * mask).sum()
    got = entity_topology_loss(torch.as_tensor(es, dtype=torch.float32), torch.as_tensor(et, dtype=torch.float32), torch.as_tensor(groups))
    assert got.item() == pytest.approx(expected, rel=1e-5)

    # the hand-written backward against autograd of the brute-force definition, under a scaled loss
    x = [torch.tensor(es, requires_grad=True) for _ in range(2)]
    (0.7 * entity_topology_loss(x[0], torch.as_tensor(et), torch.as_tensor(groups))).backward()
    n = torch.nn.functional.normalize(x[1], dim=1)
    (0.7 * (((n @ n.T - torch.as_tensor(_cos(et, et))) ** 2) * torch.as_tensor(mask)).sum()).backward()
    torch.testing.assert_close(x[0].grad, x[1].grad)


@pytest.mark.parametrize("group_level", ["prototype-entity", "prototype-prototype"])
def test_htd_golden(small, group_level):
    ds, teacher, student, batch = small
    htd = _setup({"name": "htd", "groups": 2, "gamma": 0.3, "group_level": group_level}, ds, teacher, student)
    es, et, users, items = _entities(student, teacher)
    # hard groups: argmax of the selection networks on the teacher side; item groups offset by K = 2
    gu = (et[:3] @ htd.user_bank.gate.weight.detach().numpy().T + htd.user_bank.gate.bias.detach().numpy()).argmax(1)
    gi = (et[3:] @ htd.item_bank.gate.weight.detach().numpy().T + htd.item_bank.gate.bias.detach().numpy()).argmax(1) + 2
    g = np.concatenate([gu, gi])
    present = np.unique(g)
    proto_t = np.stack([et[g == k].mean(0) for k in present])
    proto_s = np.stack([es[g == k].mean(0) for k in present])
    if group_level == "prototype-entity":
        group = ((_cos(proto_t, et) - _cos(proto_s, es)) ** 2).sum()
    else:
        group = ((_cos(proto_t, proto_t) - _cos(proto_s, proto_s)) ** 2).sum()
    mask = (g[:, None] == g[None, :]) & (_cos(et, et) > 0)
    entity = (((_cos(es, es) - _cos(et, et)) ** 2) * mask).sum()
    terms = htd(batch, student, student.representations())
    assert terms["topology"].item() == pytest.approx(0.3 * (group + entity), rel=1e-5)
    assert htd.log_state()["tau"] == htd.tau
    assert terms["group_assignment"].item() > 0
    # the logged group usage counts this batch's entities per side
    state = htd.log_state()
    for side, hard in (("user", gu), ("item", gi)):
        share = np.unique(hard, return_counts=True)[1] / len(hard)
        assert state[f"{side}_groups_used"] == len(share)
        assert state[f"{side}_groups_effective"] == pytest.approx(np.exp(-(share * np.log(share)).sum()), abs=0.01)


def test_kmeans_groups_recovers_separated_clusters_and_is_a_lloyd_fixed_point():
    rng = np.random.default_rng(5)
    centres = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    truth = rng.integers(0, 3, size=60)
    x = centres[truth] + rng.normal(scale=0.5, size=(60, 2))
    labels = kmeans_groups(torch.as_tensor(x), 3, np.random.default_rng(0)).numpy()
    # the same partition as the truth, up to renaming the clusters
    assert len({(a, b) for a, b in zip(truth, labels)}) == 3 and len(set(labels)) == 3
    # on arbitrary data: every row is nearest to its own cluster's mean (Lloyd's fixed point), no cluster empty
    y = rng.normal(size=(40, 3))
    g = kmeans_groups(torch.as_tensor(y), 5, np.random.default_rng(1)).numpy()
    means = np.stack([y[g == k].mean(0) for k in range(5)])
    assert (((y[:, None, :] - means[None]) ** 2).sum(-1).argmin(1) == g).all()


def test_htd_kmeans_assignment_routes_experts_by_fixed_teacher_clusters(small):
    ds, teacher, student, batch = small
    htd = _setup({"name": "htd", "groups": 2, "gamma": 0.4, "assignment": "kmeans"}, ds, teacher, student)
    es, et, users, items = _entities(student, teacher)
    tu, ti = teacher.embeddings()
    gu_all, gi_all = (g.numpy() for g in htd.fixed_groups)
    for t, g in ((tu, gu_all), (ti, gi_all)):  # K-means of the teacher rows: a Lloyd fixed point
        means = np.stack([t[g == k].mean(0) for k in range(2)])
        assert (((t[:, None, :] - means[None]) ** 2).sum(-1).argmin(1) == g).all()
    g = np.concatenate([gu_all[users], gi_all[items] + 2])
    present = np.unique(g)
    proto_t = np.stack([et[g == k].mean(0) for k in present])
    proto_s = np.stack([es[g == k].mean(0) for k in present])
    mask = (g[:, None] == g[None, :]) & (_cos(et, et) > 0)
    td = ((_cos(proto_t, et) - _cos(proto_s, es)) ** 2).sum() + (((_cos(es, es) - _cos(et, et)) ** 2) * mask).sum()
    # L_GA: each entity reconstructed by the expert of its cluster alone
    ga = 0.0
    for bank, rows_s, rows_t, groups in ((htd.user_bank, es[:3], et[:3], gu_all[users]), (htd.item_bank, es[3:], et[3:], gi_all[items])):
        w1, b1, w2, b2 = (p.detach().numpy() for p in (bank.w1, bank.b1, bank.w2, bank.b2))
        for x, t, k in zip(rows_s, rows_t, groups):
            out = np.maximum(x @ w1[k] + b1[k], 0) @ w2[k] + b2[k]
            ga += ((t - out) ** 2).sum()
    terms = htd(batch, student, student.representations())
    assert terms["topology"].item() == pytest.approx(0.4 * td, rel=1e-5)
    assert terms["group_assignment"].item() == pytest.approx(0.6 * ga, rel=1e-4)
    # no selection networks: every trainable part of the method is an expert that L_GA trains
    terms["group_assignment"].backward()
    assert all(p.grad is not None for p in htd.parameters())
    # no temperature either: the log has the group usage but no τ
    state = htd.log_state()
    assert "tau" not in state and state["user_groups_used"] == len(np.unique(gu_all[users]))


# ----------------------------------------------------------------------------- ranking KD
def test_rrd_golden_and_samples(small):
    ds, teacher, student, batch = small
    rrd = _setup({"name": "rrd", "interesting": 3, "uninteresting": 2, "topn": 5, "sampling": "topk"}, ds, teacher, student)
    top = teacher.user_topn(5)
    train = ds.train.toarray() > 0
    np.testing.assert_array_equal(rrd.cand[:, :3].numpy(), top[:, :3])  # deterministic: the teacher's top-3, in order
    for u in range(5):
        unint = rrd.cand[u, 3:].numpy()
        assert len(set(unint)) == 2 and not train[u, unint].any() and not set(unint) & set(top[u])
    su, si = (w.detach().numpy() for w in student.representations())
    expected = 0.0
    for u in (0, 1, 3):
        expected += _naive_listwise(si[top[u, :3]] @ su[u], si[rrd.cand[u, 3:].numpy()] @ su[u])
    assert rrd(batch, student, student.representations())[""].item() == pytest.approx(expected, rel=1e-5)


def test_ir_golden(small):
    ds, teacher, student, batch = small
    rrd = build_method({"name": "rrd", "interesting": 2, "uninteresting": 2, "topn": 4})
    ir = build_method({"name": "ir", "interesting": 2, "uninteresting": 1, "topn": 3, "sampling": "topk"})
    ctx = KDContext(ds, student, teacher, np.random.default_rng(0), max_epochs=10, methods=(ir, rrd))
    for m in (ir, rrd):  # IR finds RRD whatever the order
        m.setup(ctx)
    for m in (rrd, ir):
        m.on_epoch_start(0, student)
    item_top = teacher.item_topn(3)
    su, si = (w.detach().numpy() for w in student.representations())
    users = [0, 1, 3]
    items = sorted(set(rrd.cand[users].numpy().ravel()))  # RRD's interesting and uninteresting items
    expected = 0.0
    for i in items:
        expected += _naive_listwise(su[item_top[i, :2]] @ si[i], su[ir.cand[i, 2:].numpy()] @ si[i])
    assert ir(batch, student, student.representations())[""].item() == pytest.approx(expected, rel=1e-5)


def test_rd_golden(small):
    ds, teacher, student, batch = small
    rd = _setup({"name": "rd", "topk": 3, "temperature": 2.0, "dynamic_start_epoch": 5, "dynamic_samples": 4}, ds, teacher, student, epoch=0)
    top = teacher.user_topn(3)
    su, si = (w.detach().numpy() for w in student.representations())
    static = np.exp(-np.arange(1, 4) / 2.0)
    static /= static.sum()
    expected = sum(-(static * np.log(_sigmoid(si[top[u]] @ su[u]))).sum() for u in (0, 1, 3))
    assert rd(batch, student, student.representations())[""].item() == pytest.approx(expected, rel=1e-5)
    # from epoch 5 on: dynamic weights from the student's estimated rank among 4 uniform samples
    rd.on_epoch_start(5, student)
    # uniform samples (fixed here so that none repeats a top item: ties are then impossible)
    rd.dynamic = torch.tensor([[k for k in range(12) if k not in top[u]][:4] for u in range(5)])
    expected = 0.0
    for u in (0, 1, 3):
        s_top = si[top[u]] @ su[u]
        s_dyn = si[rd.dynamic[u].numpy()] @ su[u]
        est = np.floor((12 - 1) * np.array([(s_dyn > s).mean() for s in s_top])) + 1
        w = static * np.maximum(np.tanh(0.1 * (est - np.arange(3))), 0)
        w = w / max(w.sum(), 1e-12)
        expected += -(w * np.log(_sigmoid(s_top))).sum()
    assert rd(batch, student, student.representations())[""].item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_cd_golden(small):
    ds, teacher, student, batch = small
    cd = _setup({"name": "cd", "candidates": 4, "samples": 2, "t1": 2.0, "t2": 0.5}, ds, teacher, student)
    top = teacher.user_topn(4)
    su, si = (w.detach().numpy() for w in student.representations())
    tu, ti = teacher.embeddings()
    expected = 0.0
    for u in (0, 1, 3):
        items = cd.items[u].numpy()
        assert set(items) <= set(top[u]) and len(set(items)) == 2
        y = _sigmoid((ti[items] @ tu[u] + 0.5) / 2.0)
        p = _sigmoid(si[items] @ su[u])
        expected += -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()
    assert cd(batch, student, student.representations())[""].item() == pytest.approx(expected, rel=1e-5)


def _autograd_listwise(ranked, rest, ranked_mask, rest_mask):
    """The loss written directly with torch ops (float64), for autograd's reference gradient."""
    total = ranked.new_zeros(())
    for row in range(ranked.shape[0]):
        r, j = ranked[row][ranked_mask[row]], rest[row][rest_mask[row]]
        for k in range(len(r)):
            total = total - (r[k] - torch.log(torch.exp(r[k:]).sum() + torch.exp(j).sum()))
    return total


def test_relaxed_ranking_loss_gradient_matches_autograd_of_the_definition():
    torch.manual_seed(0)
    ranked = torch.randn(4, 5, dtype=torch.float64) * 3
    rest = torch.randn(4, 3, dtype=torch.float64) * 3
    ranked_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    rest_mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    grads = []
    for fn in (relaxed_ranking_loss, _autograd_listwise):
        r, j = ranked.clone().requires_grad_(), rest.clone().requires_grad_()
        value = fn(r, j, ranked_mask, rest_mask)
        value.backward()
        grads.append((value.item(), r.grad, j.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-10)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads[0][2], grads[1][2], rtol=1e-9, atol=1e-12)
    # a precomputed rest log-sum-exp (HetComp's complement sets) receives the same gradient as the rest
    r, lse = ranked.clone().requires_grad_(), torch.logsumexp(rest, dim=1).requires_grad_()
    relaxed_ranking_loss(r, rest[:, :0], rest_logsumexp=lse).backward()
    r2, j2 = ranked.clone().requires_grad_(), rest.clone().requires_grad_()
    relaxed_ranking_loss(r2, j2).backward()
    torch.testing.assert_close(r.grad, r2.grad)
    torch.testing.assert_close(lse.grad, j2.grad.sum(1))


def test_relaxed_ranking_loss_takes_rest_scores_or_their_logsumexp_not_both():
    ranked, rest = torch.zeros(2, 3), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="not both"):
        relaxed_ranking_loss(ranked, rest, rest_logsumexp=torch.logsumexp(rest, dim=1))


def test_relaxed_ranking_loss_never_fails_for_score_gaps_beyond_float64():
    ranked = torch.tensor([[1000.0, 0.0, -900.0, -1000.0]], requires_grad=True)
    rest = torch.tensor([[-2000.0]], requires_grad=True)
    value = relaxed_ranking_loss(ranked, rest)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(ranked.grad).all() and torch.isfinite(rest.grad).all()
    # each position k is a softmax over {k, …, K} ∪ L: the top item alone is ~certain, so its term is ~0
    assert value.item() == pytest.approx(0.0, abs=1e-3)


def test_hand_written_backwards_survive_a_retained_graph():
    """Running a backward twice (retain_graph) must give twice the gradient, not a rescaled buffer's."""
    torch.manual_seed(0)
    bank = ExpertBank(3, 2, 4, 5, mass=0.5, max_active=2)
    x = torch.randn(6, 2, requires_grad=True)
    loss = 0.3 * bank.loss_for_selection(x, torch.randn(6, 4), torch.softmax(torch.randn(6, 3), 1))
    loss.backward(retain_graph=True)
    once = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * once)
    e = torch.randn(8, 3, requires_grad=True)
    loss = 0.3 * entity_topology_loss(e, torch.randn(8, 5), torch.tensor([0, 1, 0, 1, 0, 0, 1, 1]))
    loss.backward(retain_graph=True)
    once = e.grad.clone()
    loss.backward()
    torch.testing.assert_close(e.grad, 2 * once)
