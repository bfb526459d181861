"""Every built-in KD method × every student family: set-up, per-epoch refresh, finite named terms,
gradients that reach the student (and the method's own trainable parts), clear config errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from kd_support import SMALL_PARAMS, train_tiny_teacher

from training.config import config_from_dict
from training.distill.base import Batch, KDContext
from training.distill.registry import METHODS, build_method, build_methods, load_builtin
from training.errors import ConfigError
from training.models import model_from_config

BUILTIN = sorted(name for name, cls in load_builtin().items() if cls.__module__.split(".")[-1] in ("latent", "topology", "ranking"))
FAMILIES = ["mf", "lightgcn", "neumf"]


@pytest.fixture(scope="module")
def teacher(tiny_dataset, tmp_path_factory):
    return train_tiny_teacher(tiny_dataset, tmp_path_factory.mktemp("kd-conf") / "teacher")


def test_every_builtin_method_has_small_params_and_a_docstring():
    assert set(BUILTIN) == {"de", "phr", "fitnet", "ftd", "htd", "rrd", "ir", "rd", "cd"}
    assert set(BUILTIN) <= set(SMALL_PARAMS)
    for name in BUILTIN:
        doc = METHODS[name].__doc__ or ""
        assert re.search(r"(19|20)\d\d", doc) and "=" in doc, f"{name}: the docstring needs the formula and the paper"


def _batch(dataset, rng, b=48):
    users, items = dataset.train_pairs()
    pick = rng.choice(len(users), size=b, replace=False)
    neg = rng.integers(0, dataset.n_items, size=(b, 2))
    return Batch(torch.as_tensor(users[pick]), torch.as_tensor(items[pick]), torch.as_tensor(neg), 0, 0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", BUILTIN)
def test_method_conformance(name, family, tiny_dataset, teacher):
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"family": family, "dim": 4, "layers": 1, "init_std": 0.1}})
    student = model_from_config(cfg.model, tiny_dataset.n_users, tiny_dataset.n_items, tiny_dataset.train)
    methods = build_methods(SMALL_PARAMS[name])
    ctx = KDContext(tiny_dataset, student, teacher, np.random.default_rng(0), max_epochs=50, methods=methods)
    for m in methods:
        m.setup(ctx)
    for m in methods:
        m.on_epoch_start(3, student)
    batch = _batch(tiny_dataset, np.random.default_rng(1))
    reps = student.representations()
    total = torch.zeros(())
    for m in methods:
        terms = m(batch, student, reps)
        assert isinstance(terms, dict) and terms, name
        for key, value in terms.items():
            assert value.shape == () and torch.isfinite(value), (name, key)
            total = total + m.weight * value
        assert isinstance(m.log_state(), dict)
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0, f"{name}: no gradient reaches the {family} student"
    own = [p for m in methods for p in m.parameters()]
    if own:
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in own), f"{name}: its trainable parts get no gradient"
    for m in methods:  # teacher tables are not persisted in checkpoints
        assert not any(k.startswith("t_") for k in m.state_dict())


def test_methods_need_a_teacher(tiny_dataset):
    student = model_from_config(config_from_dict({"model": {"dim": 4}}).model, tiny_dataset.n_users, tiny_dataset.n_items)
    ctx = KDContext(tiny_dataset, student, None, np.random.default_rng(0), max_epochs=5)
    with pytest.raises(ConfigError, match="needs a teacher"):
        build_method({"name": "de"}).setup(ctx)

    class ListsOnly:  # an ensemble-like teacher: ranked lists, no embeddings
        def user_topn(self, n):
            return np.tile(np.arange(n), (tiny_dataset.n_users, 1))

    ctx.teacher = ListsOnly()
    with pytest.raises(ConfigError, match="embeddings"):
        build_method({"name": "htd"}).setup(ctx)


def test_ir_without_rrd_is_a_config_error(tiny_dataset, teacher):
    ir_spec = {"name": "ir", "topn": 10, "interesting": 3, "uninteresting": 3}
    with pytest.raises(ConfigError, match=r"'ir' builds on 'rrd'"):  # declared: caught when the config is read
        build_methods([ir_spec])
    assert [m.name for m in build_methods([ir_spec, {"name": "rrd"}])] == ["ir", "rrd"]  # any order
    student = model_from_config(config_from_dict({"model": {"dim": 4}}).model, tiny_dataset.n_users, tiny_dataset.n_items)
    with pytest.raises(ConfigError, match="rrd"):  # and when set up alone
        build_method(ir_spec).setup(KDContext(tiny_dataset, student, teacher, np.random.default_rng(0), max_epochs=5))


def test_methods_own_typed_params():
    assert build_method({"name": "rrd"}).params == METHODS["rrd"].Params()
    assert build_method({"name": "rrd", "topn": 7}).params.topn == 7
    assert build_method({"name": "ftd"}).params is None


def test_a_method_listed_twice_is_a_config_error():
    with pytest.raises(ConfigError, match="twice"):
        build_methods([{"name": "de"}, {"name": "de", "weight": 0.1}])


def test_unknown_params_are_config_errors():
    with pytest.raises(ConfigError, match="experts"):
        build_method({"name": "de", "experts": 0})
    with pytest.raises(ConfigError, match="samplng"):
        build_method({"name": "rrd", "samplng": "topk"})
    with pytest.raises(ConfigError, match="takes no parameters"):
        build_method({"name": "ftd", "gamma": 0.5})
