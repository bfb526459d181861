"""Every built-in KD method × every student family: set-up, per-epoch refresh, finite named terms,
gradients that reach the student (and the method's own trainable parts), clear config errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from kd_support import SMALL_PARAMS, check_method_conformance, train_tiny_teacher

from training.config import config_from_dict
from training.distill.base import KDContext
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


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", BUILTIN)
def test_method_conformance(name, family, tiny_dataset, teacher):
    check_method_conformance(name, family, tiny_dataset, teacher)


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
