"""``distillrec ensemble experiment``: heterogeneous teachers → ensemble → students, and the table.

The experiment config (YAML) names every step's run config and run folder::

    name: hc-ml100k
    teachers:
      - {config: configs/hetcomp/ml100k/teacher-bpr.yaml, run: runs/hc-ml100k-teacher-bpr}
      - …
    ensemble: {config: configs/hetcomp/ml100k-ensemble.yaml, run: runs/hc-ml100k-ensemble}
    students:
      - {label: scratch, config: configs/hetcomp/ml100k/student-scratch.yaml, run: runs/hc-ml100k-student-scratch}
      - {label: RRD (ensemble top-K), config: …, run: …}
      - {label: HetComp, config: …, run: …}
    overrides: [train.threads=1]          # --set values applied to every training step
    timing: {users: 1000, k: 50, repeats: 5, threads: 1}

Each step runs in its own process (``distillrec train`` / ``ensemble build`` / ``ensemble distill``),
so its peak RSS is its own and is recorded; a step whose run is finished (``RunFolder.finished``; the
ensemble: ``ensemble.json``) is skipped (delete the folder, or pass ``--force STEP``, to redo it). The
table (markdown + JSON) lists every teacher, the ensemble and every student with its test metrics,
parameters, scoring time per 1,000 users and, for students, training time and peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pydantic import Field

from training.config import Strict
from training.errors import ConfigError, DistillrecError
from training.run_folder import RunFolder
from training.yaml_loader import load_yaml


class Step(Strict):
    config: Path
    run: Path
    label: str | None = None


class TimingSpec(Strict):
    users: int = Field(1000, ge=1)
    k: int = Field(50, ge=1)
    repeats: int = Field(5, ge=1)
    threads: int | None = Field(1, ge=1)


class ExperimentConfig(Strict):
    name: str
    description: str | None = None
    teachers: list[Step] = Field(min_length=1)
    ensemble: Step
    students: list[Step] = Field(default_factory=list)
    overrides: list[str] = Field(default_factory=list)
    timing: TimingSpec = Field(default_factory=TimingSpec)
    metrics: list[str] = Field(default_factory=lambda: ["recall@10", "ndcg@10", "recall@50", "ndcg@50"])


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    return load_yaml(ExperimentConfig, path, what="experiment config", where="configs/hetcomp/")


def _cli(args: list[str], log) -> None:
    cmd = [sys.executable, "-m", "training.cli", *args]
    log("$ distillrec " + " ".join(args))
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise DistillrecError(f"step failed (exit {done.returncode}): distillrec {' '.join(args)}")


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def run_steps(cfg: ExperimentConfig, force: set[str] | None = None, log=print) -> None:
    """Trains the teachers, builds the ensemble and trains the students (skipping finished steps)."""
    force = force or set()
    from training.ensemble.build import load_ensemble_config

    ens_cfg = load_ensemble_config(cfg.ensemble.config)
    members = {Path(m.run).resolve() for m in ens_cfg.members}
    teachers = {Path(t.run).resolve() for t in cfg.teachers}
    if members != teachers:
        raise ConfigError(f"{cfg.ensemble.config}: its members must be the experiment's teacher runs ({sorted(map(str, teachers))}).")
    for t in cfg.teachers:
        if force & {"all", "teachers", str(t.run)} or not RunFolder(t.run).finished:
            _cli(["train", "--config", str(t.config), "--out", str(t.run), "--no-progress", *_sets(cfg.overrides)], log)
    if force & {"all", "ensemble", "teachers"} or not (cfg.ensemble.run / "ensemble.json").exists():
        _cli(["ensemble", "build", "--config", str(cfg.ensemble.config), "--out", str(cfg.ensemble.run)], log)
    for s in cfg.students:
        if force & {"all", "students", str(s.run), s.label or ""} or not RunFolder(s.run).finished:
            _cli(["ensemble", "distill", "--config", str(s.config), "--out", str(s.run), "--ensemble", str(cfg.ensemble.run), "--no-progress", *_sets(cfg.overrides)], log)


def _row(role: str, label: str, result: dict, timing: dict, metrics: list[str]) -> dict:
    model = result.get("model", {})
    return {
        "role": role,
        "label": label,
        "family": model.get("family"),
        "dim": model.get("dim"),
        "parameters": int(model.get("parameters", 0)),
        "test": {m: result["test"]["metrics"][m] for m in metrics},
        "valid": {m: result["valid"]["metrics"][m] for m in metrics},
        "scoring": timing,
        "best_epoch": result.get("best_epoch"),
        "train_seconds": result.get("train_seconds"),
        "peak_rss_mib": result.get("peak_rss_mib"),
        "run": result.get("_run"),
    }


def collect(cfg: ExperimentConfig) -> dict:
    """Reads every step's result.json and times every model's scoring; returns the table as JSON."""
    from training.ensemble.teacher import Ensemble
    from training.ensemble.timing import scoring_ms_per_1k_users
    from training.evaluation import TorchScorer
    from training.runs import load_run

    ts = cfg.timing
    rows = []
    ens = Ensemble.load(cfg.ensemble.run)
    dataset = ens.dataset

    def timed(scorer):
        return scoring_ms_per_1k_users(scorer, dataset, ts.k, ts.users, ts.repeats, ts.threads)

    for t, m in zip(cfg.teachers, ens.runs):
        result = {**m.result, "_run": str(t.run)}
        rows.append(_row("teacher", t.label or m.model.family, result, timed(TorchScorer(m.model)), cfg.metrics))
    ens_result = {**json.loads((cfg.ensemble.run / "result.json").read_text()), "_run": str(cfg.ensemble.run)}
    rows.append(_row("ensemble", cfg.ensemble.label or f"ensemble ({len(ens.runs)} teachers)", ens_result, timed(ens), cfg.metrics))
    for s in cfg.students:
        run = load_run(s.run, dataset)
        result = {**run.result, "_run": str(s.run)}
        rows.append(_row("student", s.label or s.run.name, result, timed(TorchScorer(run.model)), cfg.metrics))
    best_teacher = {m: max(r["test"][m] for r in rows if r["role"] == "teacher") for m in cfg.metrics}
    ens_row = next(r for r in rows if r["role"] == "ensemble")
    students = {r["label"]: r for r in rows if r["role"] == "student"}
    return {
        "name": cfg.name,
        "dataset": dataset.stats(),
        "protocol": ens_result["test"].get("protocol"),
        "metrics": cfg.metrics,
        "rows": rows,
        "checks": {
            "ensemble_beats_best_teacher": {m: ens_row["test"][m] > best_teacher[m] for m in cfg.metrics},
            "students": {label: r["test"] for label, r in students.items()},
        },
        "timing": ts.model_dump(),
    }


def markdown(table: dict) -> str:
    """The table as markdown (test metrics; scoring = ms per 1,000 users for top-K lists)."""
    ms = table["metrics"]
    ds = table["dataset"]
    head = ["role", "model", "params", *[m.replace("recall", "R").replace("ndcg", "N") for m in ms], "scoring ms / 1k users", "train s", "peak RSS MiB"]
    lines = [
        f"**{table['name']}** — {ds['name']}: {ds['users']:,} users, {ds['items']:,} items, {ds['train_interactions']:,} train interactions; "
        f"split {ds['split']}, protocol {table['protocol']} (test set, seen items excluded).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in table["rows"]:
        dim = f" d={r['dim']}" if r.get("dim") else ""
        name = f"{r['label']} ({r['family']}{dim})" if r["role"] != "ensemble" else r["label"]
        rss = f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else ""
        train_s = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else ""
        cells = [r["role"], name, f"{r['parameters']:,}", *[f"{r['test'][m]:.4f}" for m in ms], f"{r['scoring']['ms_per_1k_users']:.1f}", train_s, rss]
        lines.append("| " + " | ".join(cells) + " |")
    t = table["timing"]
    lines += ["", f"Scoring: fastest of {t['repeats']} runs producing top-{t['k']} lists (seen items excluded) for {min(t['users'], ds['users'])} users, "
              f"{t['threads']} torch thread(s), scaled to 1,000 users. The ensemble's time includes every member's scoring plus the aggregation."]
    return "\n".join(lines) + "\n"


def run_experiment(config_path: str | Path, out: str | Path, force: set[str] | None = None, table_only: bool = False, log=print) -> dict:
    """Runs the steps (unless ``table_only``), then writes ``OUT/results.json`` and ``OUT/results.md``."""
    cfg = load_experiment_config(config_path)
    t0 = time.time()
    if not table_only:
        run_steps(cfg, force, log)
    table = collect(cfg)
    table["config"] = str(config_path)
    table["wall_seconds"] = round(time.time() - t0, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(table, indent=2))
    md = markdown(table)
    (out / "results.md").write_text(md)
    log(md)
    return table

