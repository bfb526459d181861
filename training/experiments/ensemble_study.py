"""The ensemble variant of an experiment: member teachers → their ensemble → students, and the table.

Each step runs in its own process (``distillrec train`` / ``ensemble build`` / ``ensemble distill``),
so its peak RSS is its own and is recorded; a step whose run is finished (``RunFolder.finished``; the
ensemble: ``ensemble.json``) is skipped (delete the folder, or pass ``--force STEP``, to redo it). The
table (markdown + JSON) lists every teacher, the ensemble and every student with its test metrics,
parameters, scoring time per 1,000 users and, for students, training time and peak RSS. The config
shape is in :mod:`training.experiments.schema`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from training.atomic import write_atomic
from training.errors import ConfigError, DistillrecError
from training.experiments.report import ensemble_markdown
from training.experiments.schema import EnsembleTeacher, ExperimentConfig
from training.run_folder import RunFolder


def _teacher(cfg: ExperimentConfig) -> EnsembleTeacher:
    if cfg.ensemble is None:
        raise ConfigError(f"experiment {cfg.name}: not an ensemble study (its teacher has no members).")
    return cfg.ensemble


def _cli(args: list[str], log) -> None:
    cmd = [sys.executable, "-m", "distillrec.cli", *args]
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

    teacher = _teacher(cfg)
    ens_cfg = load_ensemble_config(teacher.ensemble.config)
    members = {Path(m.run).resolve() for m in ens_cfg.members}
    teachers = {Path(t.run).resolve() for t in teacher.members}
    if members != teachers:
        raise ConfigError(f"{teacher.ensemble.config}: its members must be the experiment's teacher runs ({sorted(map(str, teachers))}).")
    for t in teacher.members:
        if force & {"all", "teachers", str(t.run)} or not RunFolder(t.run).finished:
            _cli(["train", "--config", str(t.config), "--out", str(t.run), "--no-progress", *_sets(cfg.set)], log)
    if force & {"all", "ensemble", "teachers"} or not (teacher.ensemble.run / "ensemble.json").exists():
        _cli(["ensemble", "build", "--config", str(teacher.ensemble.config), "--out", str(teacher.ensemble.run)], log)
    for s in cfg.students:
        if force & {"all", "students", str(s.run), s.label or ""} or not RunFolder(s.run).finished:
            _cli(
                [
                    "ensemble",
                    "distill",
                    "--config",
                    str(s.config),
                    "--out",
                    str(s.run),
                    "--ensemble",
                    str(teacher.ensemble.run),
                    "--no-progress",
                    *_sets(cfg.set),
                ],
                log,
            )


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

    ts, teacher, metrics = cfg.timing, _teacher(cfg), cfg.metrics
    rows = []
    ens = Ensemble.load(teacher.ensemble.run)
    dataset = ens.dataset

    def timed(scorer):
        return scoring_ms_per_1k_users(scorer, dataset, ts.k, ts.users, ts.repeats, ts.threads)

    for t, m in zip(teacher.members, ens.runs):
        result = {**m.result, "_run": str(t.run)}
        rows.append(_row("teacher", t.label or m.model.family, result, timed(TorchScorer(m.model)), metrics))
    ens_result = {**json.loads((teacher.ensemble.run / "result.json").read_text()), "_run": str(teacher.ensemble.run)}
    rows.append(_row("ensemble", teacher.ensemble.label or f"ensemble ({len(ens.runs)} teachers)", ens_result, timed(ens), metrics))
    for s in cfg.students:
        run = load_run(s.run, dataset)
        result = {**run.result, "_run": str(s.run)}
        rows.append(_row("student", s.label or s.run.name, result, timed(TorchScorer(run.model)), metrics))
    best_teacher = {m: max(r["test"][m] for r in rows if r["role"] == "teacher") for m in metrics}
    ens_row = next(r for r in rows if r["role"] == "ensemble")
    students = {r["label"]: r for r in rows if r["role"] == "student"}
    return {
        "name": cfg.name,
        "dataset": dataset.stats(),
        "protocol": ens_result["test"].get("protocol"),
        "metrics": metrics,
        "rows": rows,
        "checks": {
            "ensemble_beats_best_teacher": {m: ens_row["test"][m] > best_teacher[m] for m in metrics},
            "students": {label: r["test"] for label, r in students.items()},
        },
        "timing": ts.model_dump(),
    }


def run_ensemble_study(
    cfg: ExperimentConfig, config_path: str | Path, out: str | Path, force: set[str] | None = None, report_only: bool = False, log=print
) -> dict:
    """Runs the steps (unless ``report_only``), then writes ``OUT/results.json`` and ``OUT/results.md``."""
    t0 = time.time()
    if not report_only:
        run_steps(cfg, force, log)
    table = collect(cfg)
    table["config"] = str(config_path)
    table["wall_seconds"] = round(time.time() - t0, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(table, indent=2))
    md = ensemble_markdown(table)
    write_atomic(out / "results.md", md)
    log(md)
    return table
