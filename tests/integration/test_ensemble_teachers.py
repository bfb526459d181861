"""The extra heterogeneous teacher family (DAE): its factorised form is the autoencoder's score."""

from __future__ import annotations

import numpy as np
import torch

from training.checkpoint import save_checkpoint
from training.config import ModelConfig, RunConfig
from training.models import build_model, model_from_config
from training.runs import load_model_checkpoint
from training.trainer import model_checkpoint_meta


def test_dae_scores_are_the_decoded_hidden_state(tiny_dataset):
    torch.manual_seed(0)
    model = model_from_config(ModelConfig(family="dae", dim=6, init_std=0.1, dropout=0.5), tiny_dataset.n_users, tiny_dataset.n_items, tiny_dataset.train)
    model.eval()
    x = tiny_dataset.train.toarray()
    x = x / np.sqrt(x.sum(1, keepdims=True))
    h = torch.tanh(torch.from_numpy(x.astype(np.float32)) @ model.encoder.weight + model.encoder_bias)
    expected = h @ model.decoder.weight.T + model.item_bias.T
    with torch.no_grad():
        torch.testing.assert_close(model.score_all(torch.arange(tiny_dataset.n_users)), expected, rtol=1e-5, atol=1e-5)
        first = model.representations()[0]
        assert torch.equal(first, model.representations()[0])  # no dropout at evaluation
        model.train()
        assert not torch.equal(first, model.representations()[0])  # input dropout while training


def test_dae_checkpoint_reload_rebuilds_its_inputs(tiny_dataset, tmp_path):
    model = model_from_config(ModelConfig(family="dae", dim=4), tiny_dataset.n_users, tiny_dataset.n_items, tiny_dataset.train)
    save_checkpoint(tmp_path / "m.ckpt.npz", model.state_dict(), model_checkpoint_meta(model, RunConfig(), tiny_dataset, 0))
    loaded = load_model_checkpoint(tmp_path / "m.ckpt.npz", tiny_dataset)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_all(torch.arange(5)), model.score_all(torch.arange(5)))
    assert build_model(**model.constructor_args()).dropout_p == model.dropout_p
