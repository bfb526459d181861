"""The training loop on the block-structured tiny dataset (a known answer) and its bookkeeping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.checkpoint import load_checkpoint
from training.config import config_from_dict
from training.distill.base import KDMethod
from training.errors import DistillrecError, TrainingError
from training.models import model_from_config
from training.run_folder import RunFolder
from training.runs import load_run, train_run
from training.trainer import Trainer, base_loss


def _cfg(**train):
    return config_from_dict(
        {
            "name": "tiny",
            "model": {"family": "mf", "dim": 8, "init_std": 0.1},
            "train": {"epochs": 40, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0, "progress": False, **train},
            "eval": {"ks": [5], "select": "hr@5", "patience": 100},
        }
    )


def test_base_losses_by_hand():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([[1.0], [1.0]])
    bpr = -(np.log(1 / (1 + np.exp(-1.0))) + np.log(1 / (1 + np.exp(1.0))))
    assert base_loss("bpr", pos, neg).item() == pytest.approx(bpr, rel=1e-6)
    bce = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(0.0)) + 2 * np.log1p(np.exp(1.0))
    assert base_loss("bce", pos, neg).item() == pytest.approx(bce, rel=1e-6)


@pytest.mark.parametrize("family", ["mf", "lightgcn", "neumf"])
def test_learns_the_block_structure(family, tiny_dataset, tmp_path):
    cfg = _cfg()
    cfg.model.family = family
    result = train_run(cfg, tmp_path / family, dataset=tiny_dataset)
    # Each user's own block has 12 items, 7 of them in train+valid: a model that learnt the blocks
    # puts the test item in the top 5 (random ranking: about 5 / 41).
    assert result["test"]["metrics"]["hr@5"] >= 0.8, result["test"]
    assert result["test"]["protocol"] == "full"
    lines = (tmp_path / family / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == result["epochs"] == 40
    assert {"epoch", "loss", "train_seconds", "valid"} <= set(json.loads(lines[0]))
    loaded = load_run(tmp_path / family, dataset=tiny_dataset)
    assert loaded.result["best_epoch"] == result["best_epoch"]
    assert loaded.model.num_parameters() == result["model"]["parameters"]


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    straight = train_run(_cfg(epochs=6), tmp_path / "a", dataset=tiny_dataset)
    train_run(_cfg(epochs=3), tmp_path / "b", dataset=tiny_dataset)
    resumed = train_run(_cfg(epochs=6), tmp_path / "b", dataset=tiny_dataset, resume=True)
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 6
    a, _ = load_checkpoint(tmp_path / "a" / "last.ckpt.npz")
    b, _ = load_checkpoint(tmp_path / "b" / "last.ckpt.npz")
    torch.testing.assert_close(a["model.user_emb.weight"], b["model.user_emb.weight"])
    assert resumed["test"]["metrics"] == straight["test"]["metrics"]


def test_a_run_is_finished_only_with_its_config_best_checkpoint_and_result(tiny_dataset, tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert not folder.finished and folder.missing == [folder.config, folder.best, folder.result]
    train_run(_cfg(epochs=2), folder.root, dataset=tiny_dataset)
    assert folder.finished and folder.missing == []
    folder.best.unlink()  # result.json alone does not make a run finished
    assert not folder.finished and folder.missing == [folder.best]
    with pytest.raises(DistillrecError, match=r"run: not a finished run \(best.ckpt.npz is missing\)"):
        load_run(folder.root, tiny_dataset)


def test_periodic_checkpoints_and_early_stopping(tiny_dataset, tmp_path):
    # lr ~0: the validation metric never improves after the first evaluation, so with patience 2
    # training stops after epochs 0 (best), 1 and 2.
    cfg = config_from_dict(
        {
            "model": {"family": "mf", "dim": 8},
            "train": {"epochs": 50, "lr": 1e-12, "checkpoint_every": 2, "progress": False},
            "eval": {"ks": [5], "select": "hr@5", "patience": 2},
        }
    )
    early = train_run(cfg, tmp_path / "e", dataset=tiny_dataset)
    assert early["stopped_early"] and early["epochs"] == 3 and early["best_epoch"] == 0
    ckpts = sorted(p.name for p in (tmp_path / "e" / "checkpoints").iterdir())
    assert ckpts == ["epoch-0001.ckpt.npz"]
    _, meta = load_checkpoint(tmp_path / "e" / "checkpoints" / ckpts[0])
    assert meta["epoch"] == 1 and meta["constructor"]["family"] == "mf"


class _Explodes(KDMethod):
    name = "explodes"

    def forward(self, batch, student, reps):
        return {"boom": reps[0].sum() * float("nan")}


def test_non_finite_loss_is_a_clear_error(tiny_dataset, tmp_path):
    cfg = _cfg(epochs=2)
    model = model_from_config(cfg.model, tiny_dataset.n_users, tiny_dataset.n_items)
    trainer = Trainer(cfg, tiny_dataset, model, tmp_path, methods=[_Explodes()])
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 0, batch 0 \(terms: explodes.boom"):
        trainer.fit()


def test_interrupt_saves_progress(tiny_dataset, tmp_path, monkeypatch):
    cfg = _cfg(epochs=5)
    model = model_from_config(cfg.model, tiny_dataset.n_users, tiny_dataset.n_items)
    trainer = Trainer(cfg, tiny_dataset, model, tmp_path)
    calls = {"n": 0}
    real = trainer._epoch

    def flaky(epoch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(epoch)

    monkeypatch.setattr(trainer, "_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    _, meta = load_checkpoint(tmp_path / "last.ckpt.npz")
    assert meta["state"]["epoch"] == 2


def _scripted(tiny_dataset, folder, n_epochs, eval_cfg, metrics_at):
    """A real trainer whose validation metrics are ``metrics_at(epoch)`` instead of measured ones."""
    from training.evaluation.protocols import EvalResult

    cfg = config_from_dict({"model": {"family": "mf", "dim": 8}, "train": {"epochs": n_epochs, "progress": False}, "eval": eval_cfg})
    trainer = Trainer(cfg, tiny_dataset, model_from_config(cfg.model, tiny_dataset.n_users, tiny_dataset.n_items), folder)
    trainer.evaluate = lambda part: EvalResult("full", part, metrics_at(trainer.state.epoch), 1)
    return trainer


@pytest.mark.parametrize(("stop_on", "epochs", "resume_at"), [(None, 3, None), (["hr@5", "ndcg@5"], 5, None), (["hr@5", "ndcg@5"], 5, 2)])
def test_stop_on_watches_several_metrics(tiny_dataset, tmp_path, stop_on, epochs, resume_at):
    """hr@5 (the selection metric) peaks at evaluation 0, ndcg@5 keeps improving until evaluation 2: with
    patience 2, watching hr@5 alone stops after epoch 2; watching both only after epoch 4 (also when
    resumed in between). The best epoch is the selection metric's either way."""
    hr, ndcg = [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4], [0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1]
    eval_cfg = {"ks": [5], "select": "hr@5", "patience": 2, "stop_on": stop_on}

    def metrics_at(epoch):
        return {"hr@5": hr[min(epoch, 6)], "ndcg@5": ndcg[min(epoch, 6)]}

    if resume_at:
        _scripted(tiny_dataset, tmp_path, resume_at, eval_cfg, metrics_at).fit()
    result = _scripted(tiny_dataset, tmp_path, 50, eval_cfg, metrics_at).fit(resume=bool(resume_at))
    assert (result["epochs"], result["best_epoch"], result["stopped_early"]) == (epochs, 0, True)


def test_stop_on_is_validated():
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.stop_on 'hit@5' must look like"):
        config_from_dict({"eval": {"stop_on": ["hit@5"]}})
    cfg = config_from_dict({"eval": {"ks": [10], "select": "hr@10", "stop_on": ["hr@5", "hr@20"]}})
    assert cfg.eval.ks == [5, 10, 20] and cfg.eval.stop_metrics == ["hr@5", "hr@20"]
    assert config_from_dict({"eval": {"select": "hr@10"}}).eval.stop_metrics == ["hr@10"]


def test_resume_from_a_checkpoint_without_stop_bests(tiny_dataset, tmp_path):
    """A last.ckpt written before ``stop_bests`` existed resumes with the selection metric's best, so the
    patience count goes on as before (hr@5 never improves after evaluation 0: stop after epoch 2)."""
    from training.checkpoint import save_checkpoint

    eval_cfg = {"ks": [5], "select": "hr@5", "patience": 2}

    def metrics_at(epoch):
        return {"hr@5": 0.5 if epoch == 0 else 0.4}

    _scripted(tiny_dataset, tmp_path, 2, eval_cfg, metrics_at).fit()
    tensors, meta = load_checkpoint(tmp_path / "last.ckpt.npz")
    del meta["state"]["stop_bests"]
    save_checkpoint(tmp_path / "last.ckpt.npz", tensors, meta)
    result = _scripted(tiny_dataset, tmp_path, 50, eval_cfg, metrics_at).fit(resume=True)
    assert (result["epochs"], result["best_epoch"]) == (3, 0)


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from training.checkpoint import save_checkpoint

    path = tmp_path / "last.ckpt.npz"
    save_checkpoint(path, {"w": np.arange(3.0)}, {"epoch": 1})

    def half_written(fh, **arrays):
        fh.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": np.arange(5.0)}, {"epoch": 2})
    monkeypatch.undo()
    tensors, meta = load_checkpoint(path)
    assert meta == {"epoch": 1} and tensors["w"].tolist() == [0.0, 1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt.npz"]  # no temporary file left
