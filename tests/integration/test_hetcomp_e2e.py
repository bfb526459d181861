"""End to end on synthetic data: heterogeneous teachers → ensemble → HetComp / RRD / scratch students → table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from hetcomp_tiny import ensemble_tree, run_tree, train_teachers

from training.config import config_from_dict
from training.distill.train_student import distill_run
from training.ensemble import Ensemble
from training.ensemble.build import build_ensemble, load_ensemble_config
from training.errors import ConfigError
from training.experiments import run_experiment
from training.runs import load_run, train_run


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hc")
    csv, runs = train_teachers(folder)
    (folder / "ensemble.yaml").write_text(yaml.safe_dump(ensemble_tree([str(r) for r in runs])))
    build_ensemble(load_ensemble_config(folder / "ensemble.yaml"), folder / "ensemble", log=lambda *a: None)
    return folder, csv, runs


def student_tree(csv, ensemble, methods, **train):
    train = {"epochs": 40, "lr": 0.01, "weight_decay": 1e-5, "batch_size": 64, **train}
    tree = run_tree(csv, "mf", {"dim": 8, "init_std": 0.01}, **train)
    tree["eval"].update(every=2, select="recall@10")
    if methods:
        tree["distill"] = {"teacher": str(ensemble), "methods": methods}
    return tree


def test_hetcomp_student_end_to_end(built):
    folder, csv, runs = built
    hetcomp = {"name": "hetcomp", "weight": 0.01, "top_k": 10, "positives": 3, "period": 2, "start_epoch": 2, "discrepancy_k": 10, "listwise_depths": [6, 2]}
    cfg = config_from_dict(student_tree(csv, folder / "ensemble", [hetcomp], base_loss_weight=0.0))
    result = distill_run(cfg, folder / "hetcomp")
    log = [json.loads(line) for line in (folder / "hetcomp" / "metrics.jsonl").read_text().splitlines()]
    phases = [r["kd_state"]["hetcomp"]["phase"] for r in log]
    # official schedule with p = 2: DKC from epoch 2, θ < 1 from epoch 20, so every pair reaches the
    # last of 3 checkpoints by epoch 24 at the latest and the listwise phase follows
    assert phases[0] == 1 and phases[-1] == 2 and phases.index(2) <= 24
    assert all("hetcomp.rank" in r["loss"] for r in log if r["kd_state"]["hetcomp"]["phase"] == 2)
    assert "base" not in log[0]["loss"]  # KD only
    assert result["teacher"]["kind"] == "ensemble"
    # the block structure is learnt from the ensemble's lists alone (random: recall@10 ≈ 10/44)
    assert result["test"]["metrics"]["recall@10"] > 0.6, result["test"]["metrics"]
    # in phase 2 the target list is exactly the ensemble's top-K
    ens = Ensemble.load(folder / "ensemble")
    trajs = ens.trajectories()
    from service.bundle.aggregation import aggregate_lists

    final, _ = aggregate_lists([t.items[-1] for t in trajs], 10, ens.weights, ens.temperature)
    assert np.array_equal(final, ens.user_topn(10))


def test_rrd_and_scratch_students_from_the_ensemble(built):
    folder, csv, runs = built
    rrd = {"name": "rrd", "weight": 0.01, "interesting": 5, "uninteresting": 5, "topn": 10, "sampling": "topk"}
    result = distill_run(config_from_dict(student_tree(csv, folder / "ensemble", [rrd], epochs=4)), folder / "rrd")
    assert result["teacher"]["kind"] == "ensemble" and np.isfinite(result["test"]["metrics"]["recall@10"])
    scratch = train_run(config_from_dict(student_tree(csv, None, [], epochs=4)), folder / "scratch")
    assert "teacher" not in scratch
    with pytest.raises(ConfigError, match="lists a method twice"):  # the one distill path checks every teacher kind
        distill_run(config_from_dict(student_tree(csv, folder / "ensemble", [rrd, rrd], epochs=4)), folder / "twice")

    exp = {
        "name": "tiny",
        "teacher": {
            "members": [{"config": str(folder / f"t{i}.yaml"), "run": str(r)} for i, r in enumerate(runs)],
            "ensemble": {"config": str(folder / "ensemble.yaml"), "run": str(folder / "ensemble")},
        },
        "students": [
            {"label": "scratch", "config": str(folder / "s.yaml"), "run": str(folder / "scratch")},
            {"label": "RRD", "config": str(folder / "s.yaml"), "run": str(folder / "rrd")},
        ],
        "timing": {"users": 20, "repeats": 1},
        "metric": "recall@10",
        "report": ["ndcg@10"],
    }
    (folder / "exp.yaml").write_text(yaml.safe_dump(exp))
    table = run_experiment(folder / "exp.yaml", folder / "results", report_only=True, log=lambda *a: None)
    assert table["metrics"] == ["recall@10", "ndcg@10"]
    roles = [r["role"] for r in table["rows"]]
    assert roles == ["teacher", "teacher", "ensemble", "student", "student"]
    ens_row = table["rows"][2]
    assert ens_row["parameters"] == sum(r["parameters"] for r in table["rows"][:2])
    assert all(r["scoring"]["ms_per_1k_users"] > 0 for r in table["rows"])
    md = (folder / "results" / "results.md").read_text()
    assert "| ensemble |" in md and "RRD (mf d=8)" in md
    assert load_run(folder / "rrd").result["best_epoch"] >= 0
    with pytest.raises(ConfigError, match="--only and --seed select"):  # one runner, two variants: their own options
        run_experiment(folder / "exp.yaml", folder / "results", only=["RRD"], report_only=True, log=lambda *a: None)
