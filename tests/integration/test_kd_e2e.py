"""End to end on synthetic data: a distilled student beats the scratch student; the `distill` and
`experiment` commands write what they promise and resume where they stopped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import clustered_interactions
from kd_support import student_tree, teacher_config, train_tiny_teacher

from distillrec.cli import main
from training.config import config_from_dict
from training.data.splits import leave_one_out
from training.distill.train_student import distill_run
from training.errors import ConfigError
from training.experiments import run_experiment
from training.experiments.report import best_on_validation
from training.runs import train_run

RRD = {"name": "rrd", "weight": 0.1, "interesting": 5, "uninteresting": 5, "topn": 20}


@pytest.fixture(scope="module")
def clustered():
    """120 users × 96 items in 8 blocks, leave-one-out by time."""
    return leave_one_out(clustered_interactions(n_users=120, n_items=96, n_clusters=8, per_user=8, seed=1), "clustered", seed=0)


@pytest.fixture(scope="module")
def teacher(clustered, tmp_path_factory):
    return train_tiny_teacher(clustered, tmp_path_factory.mktemp("kd-e2e") / "teacher")


def test_distilled_student_beats_scratch(clustered, teacher, tmp_path):
    """Dim-4 students, 10 epochs: ranking distillation from the dim-16 teacher must win on test NDCG@10."""
    scratch, kd = [], []
    for seed in (0, 1):
        scratch.append(train_run(config_from_dict(student_tree(seed=seed)), tmp_path / f"scratch{seed}", dataset=clustered)["test"]["metrics"]["ndcg@10"])
        tree = {**student_tree(seed=seed), "distill": {"methods": [RRD]}}
        kd.append(distill_run(config_from_dict(tree), tmp_path / f"rrd{seed}", dataset=clustered, teacher_artifacts=teacher)["test"]["metrics"]["ndcg@10"])
    teacher_ndcg = teacher.ref()["test"]["metrics"]["ndcg@10"]
    assert np.mean(kd) > 1.15 * np.mean(scratch), (kd, scratch, teacher_ndcg)
    assert min(kd) > max(scratch)


def _write_yaml(path, tree):
    path.write_text(yaml.safe_dump(json.loads(json.dumps(tree, default=str)), sort_keys=False))
    return path


@pytest.fixture()
def csv_data(tmp_path):
    data = clustered_interactions(n_users=120, n_items=96, n_clusters=8, per_user=8, seed=1)
    path = tmp_path / "interactions.csv"
    lines = ["user,item,timestamp"] + [f"{u},{i},{int(t)}" for u, i, t in zip(data.user, data.item, data.timestamp, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return {"source": "file", "path": str(path), "timestamp_col": "timestamp", "name": "clustered"}


def test_distill_command_records_teacher_methods_and_kd_terms(csv_data, tmp_path, capsys):
    teacher_tree = {**teacher_config(epochs=10).model_dump(mode="json"), "data": csv_data}
    assert main(["train", "--config", str(_write_yaml(tmp_path / "t.yaml", teacher_tree)), "--out", str(tmp_path / "teacher"), "--no-progress"]) == 0
    tree = {**student_tree(epochs=3), "data": csv_data, "distill": {"methods": [{"name": "de", "experts": 4}, RRD]}}
    cfg = _write_yaml(tmp_path / "s.yaml", tree)
    assert main(["distill", "--config", str(cfg), "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "kd"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "kd" / "result.json").read_text())
    assert result["teacher"]["path"] == str(tmp_path / "teacher") and [m["name"] for m in result["distill"]["methods"]] == ["de", "rrd"]
    assert {k["name"] for k in result["kd"]} == {"de", "rrd"} and result["kd"][0]["training_only_parameters"] > 0
    first = json.loads((tmp_path / "kd" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"de.user", "de.item", "rrd", "base"} <= set(first["loss"]) and "tau" in first["kd_state"]["de"]
    assert list((tmp_path / "teacher" / "kd-cache").glob("user_topn-n20-*.npz"))
    # no teacher → clear error
    assert main(["distill", "--config", str(cfg), "--out", str(tmp_path / "kd2"), "--no-progress"]) == 2
    assert "no teacher" in capsys.readouterr().err


def test_experiment_runs_tables_and_resumes(csv_data, tmp_path, monkeypatch):
    t = _write_yaml(tmp_path / "teacher.yaml", {**teacher_config(epochs=10).model_dump(mode="json"), "data": csv_data})
    s = _write_yaml(tmp_path / "student.yaml", {**student_tree(epochs=4), "data": csv_data})
    exp = _write_yaml(
        tmp_path / "exp.yaml",
        {
            "name": "tiny-exp",
            "teacher": {"config": str(t)},
            "student": {"config": str(s)},
            "seeds": [0, 1],
            "metric": "ndcg@10",
            "report": ["hr@10"],
            "methods": [{"label": "RRD", "methods": [RRD]}, {"label": "RD", "methods": [{"name": "rd", "weight": 0.01}], "seeds": [0]}],
        },
    )
    out = tmp_path / "exp"
    # one entry and one seed (what parallel processes do); a seed outside the config is refused
    with pytest.raises(ConfigError, match=r"--seed: \[7\]"):
        run_experiment(exp, out, only=["RRD"], seeds=[7], log=lambda msg: None)

    # while it trains, a "parallel process" finishes a run of an entry this one has already passed:
    # the final report still counts it
    def parallel_process(msg):
        if msg.startswith("RRD seed 1: training"):
            run_experiment(exp, out, only=["scratch"], seeds=[0], log=lambda msg: None)

    partial = run_experiment(exp, out, only=["RRD"], seeds=[1], log=parallel_process)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["rrd-seed1", "scratch-seed0"]
    assert {r["label"]: r["finished"] for r in partial["summary"]} == {"scratch": 1, "RRD": 1, "RD": 0}
    on_disk = json.loads((out / "results.json").read_text())
    assert {r["label"]: r["finished"] for r in on_disk["summary"]} == {"scratch": 1, "RRD": 1, "RD": 0}
    assert not list(out.glob(".*.tmp"))  # reports are replaced atomically, no temporary file left
    results = run_experiment(exp, out, log=lambda msg: None)
    assert (out / "teacher" / "result.json").exists()
    rows = {r["label"]: r for r in results["summary"]}
    assert set(rows) == {"scratch", "RRD", "RD"} and rows["RRD"]["finished"] == 2
    # an entry with its own seeds trains only those
    assert rows["RD"]["seeds"] == [0] and not (out / "runs" / "rd-seed1").exists()
    assert rows["RRD"]["gain_vs_scratch"] == pytest.approx(rows["RRD"]["ndcg@10"]["mean"] / rows["scratch"]["ndcg@10"]["mean"] - 1)
    # the validation value of the selection metric at each run's best epoch, averaged like the test value
    runs = {(r["label"], r["seed"]): r["result"] for r in results["runs"]}
    select = runs[("RRD", 0)]["select"]
    assert rows["RRD"]["valid"]["metric"] == select
    assert rows["RRD"]["valid"]["mean"] == pytest.approx(np.mean([runs[("RRD", k)]["valid"]["metrics"][select] for k in (0, 1)]))
    md = (out / "results.md").read_text()
    assert "| RRD | 2 |" in md and "teacher (mf dim 16)" in md and (out / "results.png").stat().st_size > 1000
    assert (
        f"valid {select.upper()}" in md
        and "Best method on validation (highest mean validation" in md
        and md.count(f": {best_on_validation(results['summary'])}.") == 1
    )
    before = json.loads((out / "runs" / "rrd-seed1" / "result.json").read_text())

    # an interrupted run: only its last checkpoint is left → it resumes; finished runs are skipped
    (out / "runs" / "rrd-seed1" / "result.json").unlink()
    calls = []
    import training.distill.train_student as drun
    import training.runs as truns

    real_distill, real_train = drun.distill_run, truns.train_run
    monkeypatch.setattr(truns, "train_run", lambda *a, **k: real_train(*a, **k) if k.get("methods") else pytest.fail("re-trained a finished run"))
    monkeypatch.setattr(drun, "distill_run", lambda *a, **k: calls.append(("distill", k["resume"])) or real_distill(*a, **k))
    again = run_experiment(exp, out, log=lambda msg: None)
    assert calls == [("distill", True)]
    after = json.loads((out / "runs" / "rrd-seed1" / "result.json").read_text())
    assert after["test"] == before["test"] and after["best_epoch"] == before["best_epoch"]
    assert again["summary"][1]["finished"] == 2
    # an entry's seeds must be the experiment's
    for wrong in ([0, 5], [1, 1]):
        bad = _write_yaml(tmp_path / "bad.yaml", {**yaml.safe_load(exp.read_text()), "methods": [{"label": "RD", "methods": [{"name": "rd"}], "seeds": wrong}]})
        with pytest.raises(ConfigError, match=rf"seeds \[{wrong[0]}, {wrong[1]}\]: must be distinct seeds among the experiment's \[0, 1\]"):
            run_experiment(bad, tmp_path / "bad", log=lambda msg: None)

    # a run trained before a setting existed (its config.yaml lacks it) compares at the setting's default
    for run_dir in (out / "runs").iterdir():
        tree = yaml.safe_load((run_dir / "config.yaml").read_text())
        del tree["eval"]["stop_on"]
        _write_yaml(run_dir / "config.yaml", tree)
    assert run_experiment(exp, out, log=lambda msg: None)["summary"][1]["finished"] == 2

    # a run trained by `distillrec distill` under its own name, moved into the experiment, is reused
    tree = yaml.safe_load((out / "runs" / "rrd-seed0" / "config.yaml").read_text())
    _write_yaml(out / "runs" / "rrd-seed0" / "config.yaml", {**tree, "name": "trained-elsewhere"})
    assert run_experiment(exp, out, log=lambda msg: None)["summary"][1]["finished"] == 2

    # a finished run whose configuration no longer matches the experiment is not silently reused
    exp_tree = yaml.safe_load(exp.read_text())
    exp_tree["methods"][0]["methods"][0]["weight"] = 0.5
    _write_yaml(exp, exp_tree)
    with pytest.raises(ConfigError, match="different configuration"):
        run_experiment(exp, out, log=lambda msg: None)


def test_cost_benchmark_times_every_entry_next_to_scratch(csv_data, tmp_path):
    from distillrec.benchmarks.kd_cost import run

    t = _write_yaml(tmp_path / "teacher.yaml", {**teacher_config(epochs=3).model_dump(mode="json"), "data": csv_data})
    train_run(config_from_dict(yaml.safe_load(t.read_text())), tmp_path / "teacher")
    s = _write_yaml(tmp_path / "student.yaml", {**student_tree(), "data": csv_data})
    exp = _write_yaml(
        tmp_path / "exp.yaml",
        {
            "name": "tiny-cost",
            "teacher": {"run": str(tmp_path / "teacher")},
            "student": {"config": str(s)},
            "methods": [{"label": "DE", "methods": [{"name": "de", "experts": 4}]}, {"label": "RRD", "methods": [RRD]}],
        },
    )
    report = run(tmp_path / "bench", exp, epochs=1, at_epochs=[0, 50], threads=1)
    assert [r["label"] for r in report["rows"]] == ["scratch", "DE", "RRD"]
    assert report["rows"][0]["ratio_to_scratch"] == {"0": 1.0, "50": 1.0}
    assert report["rows"][1]["training_only_parameters"] > 0 and report["rows"][1]["state"]["50"]["de"]["tau"] < 1
    # the floor (experts' matmuls + Adam only) is timed for the expert methods alone, in the same round-robin
    de, rrd = report["rows"][1], report["rows"][2]
    assert set(de["floor_ratio_to_scratch"]) == {"0", "50"} and all(r > 1 for r in de["floor_ratio_to_scratch"].values())
    assert "floor_ratio_to_scratch" not in rrd and "floor_seconds" not in rrd
    table = (tmp_path / "bench" / "kd_cost.md").read_text()
    assert "| DE |" in table and "floor ÷ scratch @ 50" in table


def test_cost_floor_batches_cover_one_epoch_of_training_pairs():
    import scipy.sparse as sp

    from distillrec.benchmarks.kd_cost import floor_batches

    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 50, 1000), rng.integers(0, 80, 1000)
    excluded = sp.csr_matrix((np.ones(1000), (users, items)), shape=(50, 80))
    batches = floor_batches(users, items, excluded, n_items=80, batch_size=128, negatives=2)
    assert len(batches) == 8  # ⌈1000 / 128⌉
    assert set(np.concatenate([u.numpy() for u, _ in batches]).tolist()) == set(users.tolist())
    assert set(np.concatenate([i.numpy() for _, i in batches]).tolist()) >= set(items.tolist())
    assert all(len(u) == len(np.unique(u)) and len(i) == len(np.unique(i)) for u, i in batches)
    assert all(len(u) <= 128 and len(i) <= 128 * 3 for u, i in batches)


def test_best_on_validation_ignores_scratch_unfinished_entries_and_the_test_split():
    def row(label, valid, test, finished=1):
        return {"label": label, "finished": finished, "valid": {"mean": valid}, "ndcg@10": {"mean": test}}

    rows = [row("scratch", 0.9, 0.9), row("A", 0.30, 0.50), row("B", 0.35, 0.40), {"label": "C", "finished": 0}]
    assert best_on_validation(rows) == "B"
    assert best_on_validation(rows[:1]) is None


def test_distillation_with_per_row_adam_on_the_torch_loop(clustered, teacher, tmp_path):
    """``train.adam_rows: batch``: the student's tables get sparse gradients from the ranking and latent
    methods; RRD still beats scratch trained the same way, and DE, IR and PHR train."""
    batch = {"adam_rows": "batch", "engine": "torch"}
    scratch = train_run(config_from_dict(student_tree(**batch)), tmp_path / "scratch", dataset=clustered)
    assert scratch["adam_rows"] == "batch"
    tree = {**student_tree(**batch), "distill": {"methods": [RRD]}}
    kd = distill_run(config_from_dict(tree), tmp_path / "rrd", dataset=clustered, teacher_artifacts=teacher)
    assert kd["test"]["metrics"]["ndcg@10"] > 1.15 * scratch["test"]["metrics"]["ndcg@10"], (kd["test"], scratch["test"])
    methods = [{"name": "de", "weight": 0.01}, {"name": "phr", "weight": 0.01}, {**RRD, "name": "rrd"}, {"name": "ir", "weight": 0.1}]
    tree = {**student_tree(**batch, epochs=2), "distill": {"methods": methods}}
    assert distill_run(config_from_dict(tree), tmp_path / "mix", dataset=clustered, teacher_artifacts=teacher)["adam_rows"] == "batch"
