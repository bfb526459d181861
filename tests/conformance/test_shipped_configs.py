"""Every config shipped under configs/ loads and validates, with the overrides the experiments apply.

The experiments that use them take hours, so a typo in a `set:` list or a method's parameters would
otherwise surface only when someone re-runs one.
"""

from pathlib import Path

import pytest
import yaml

from training.config import load_config
from training.distill.train_student import build_methods
from training.ensemble.build import load_ensemble_config
from training.experiments.runner import run_config
from training.experiments.schema import load_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(CONFIGS.rglob("*.yaml"))


def _kind(path: Path) -> str:
    keys = set(yaml.safe_load(path.read_text()))
    if "members" in keys:
        return "ensemble"
    if "students" in keys:
        return "ensemble experiment"
    if "student" in keys:
        return "kd experiment"
    return "run"


def _check_kd_experiment(path: Path) -> None:
    exp = load_experiment(path)
    if exp.teacher.config is not None:
        load_config(exp.teacher.config, exp.teacher.set)
    teacher = Path("runs/teacher")
    run_config(exp, "scratch", [], [], exp.seeds[0], teacher)
    for entry in exp.methods:
        cfg = run_config(exp, entry.label, entry.methods, entry.set, (entry.seeds or exp.seeds)[0], teacher)
        assert cfg.distill is not None and cfg.distill.teacher == teacher
        build_methods(cfg)


def _check_ensemble_experiment(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.ensemble is not None
    for step in [*exp.ensemble.members, *exp.students]:
        cfg = load_config(step.config, exp.set)
        if cfg.distill is not None:
            build_methods(cfg)
    load_ensemble_config(exp.ensemble.ensemble.config)


def _check_run(path: Path) -> None:
    cfg = load_config(path)
    if cfg.distill is not None:
        build_methods(cfg)


CHECKS = {
    "run": _check_run,
    "kd experiment": _check_kd_experiment,
    "ensemble": load_ensemble_config,
    "ensemble experiment": _check_ensemble_experiment,
}


def test_every_kind_of_config_is_shipped():
    kinds = [_kind(p) for p in SHIPPED]
    assert {k: kinds.count(k) > 0 for k in CHECKS} == {k: True for k in CHECKS}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_shipped_config_loads(path):
    CHECKS[_kind(path)](path)
