"""The output tower (ConCF's target-head network) and matrix factorisation with it: golden values on
hand-set weights, dropout only in training, checkpoint arguments, config checks."""

from __future__ import annotations

import pytest
import torch

from training.config import config_from_dict
from training.errors import ConfigError
from training.models import build_model, model_from_config
from training.models.mf import MF
from training.models.tower import Tower


def _hand_set(tower: Tower) -> Tower:
    """dim 4: W₁ picks x₁ and −x₂, W₂ = [2, 3] + 0.5, the linear layer y ↦ 1 − y."""
    with torch.no_grad():
        tower.mlp[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, -1.0, 0, 0]]))
        tower.mlp[0].bias.zero_()
        tower.mlp[3].weight.copy_(torch.tensor([[2.0, 3.0]]))
        tower.mlp[3].bias.fill_(0.5)
        tower.linear.weight.fill_(-1.0)
        tower.linear.bias.fill_(1.0)
    return tower


def test_tower_golden_and_dropout_only_in_training():
    tower = _hand_set(Tower(4, dropout=0.5)).eval()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, 0.0, 0.0]])
    # row 0: ReLU([1, −2]) = [1, 0] → 2·1 + 0.5 = 2.5 → 1 − 2.5 = −1.5; row 1: ReLU([−1, 2]) = [0, 2] → 6.5 → −5.5
    assert tower(x).squeeze(1).tolist() == [-1.5, -5.5]
    assert torch.equal(tower(x), tower(x)) and tower.out_dim == 1
    tower.train()
    torch.manual_seed(0)
    outs = {tuple(tower(x).squeeze(1).tolist()) for _ in range(20)}
    assert len(outs) > 1  # dropout is on in training


def test_mf_with_a_tower_scores_through_it_and_rebuilds_from_its_arguments():
    torch.manual_seed(0)
    model = MF(2, 3, 4, init_std=0.1, tower="mlp", dropout=0.1)
    _hand_set(model.tower)
    with torch.no_grad():
        model.user_emb.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
        model.item_emb.weight.copy_(torch.tensor([[-1.0, -2.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 0.0]]))
    model.eval()
    u, i = model.representations()
    assert u.shape == (2, 1) and i.shape == (3, 1)
    # user 0 → −1.5; user 1 (zero vector) → 1 − 0.5 = 0.5; items → −5.5, −1.5, 0.5
    assert model.score_all(torch.tensor([0, 1])).tolist() == [[8.25, 2.25, -0.75], [-2.75, -0.75, 0.25]]
    shared = model.shared_representations((u, i))
    assert shared[0] is model.user_emb.weight and shared[1] is model.item_emb.weight
    # embeddings (2 + 3)·4, then the tower's layers 4 → 2, 2 → 1, 1 → 1 (weights + biases)
    assert model.num_parameters() == 20 + 10 + 3 + 2
    args = model.constructor_args()
    assert args["tower"] == "mlp" and args["dropout"] == 0.1
    rebuilt = build_model(**args)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    assert torch.equal(rebuilt.representations()[0], u)
    assert "tower" not in MF(2, 3, 4).constructor_args() and MF(2, 3, 4).tower is None


def test_tower_config_is_checked():
    cfg = config_from_dict({"model": {"family": "mf", "dim": 8, "tower": "mlp", "dropout": 0.1}})
    model = model_from_config(cfg.model, 3, 5)
    assert isinstance(model.tower, Tower) and model.representations()[0].shape == (3, 2)
    with pytest.raises((ConfigError, ValueError), match="model.tower"):
        config_from_dict({"model": {"family": "lightgcn", "tower": "mlp"}})


def test_the_fused_loop_refuses_a_tower():
    from training.distributed import DistContext
    from training.fused_bpr import eligible

    cfg = config_from_dict({"model": {"family": "mf", "dim": 8, "tower": "mlp"}})
    assert "tower" in eligible(model_from_config(cfg.model, 3, 5), [], cfg, DistContext())
