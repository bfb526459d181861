"""Run an experiment (:mod:`training.experiments.schema`): its teacher is one run or an ensemble.

**One teacher run**: train (or reuse) the teacher, then the scratch student and every method entry
for every seed, and summarise them (``results.json``, ``results.md``, ``results.png``). Layout of ``OUT``::

    OUT/experiment.yaml          the experiment config as run
    OUT/teacher/                 the teacher run, when the config does not name an existing folder
    OUT/runs/<label>-seed<s>/    one run folder per (entry, seed), as `distillrec train/distill` write
    OUT/results.json|md|png      rewritten after every finished run

Resuming: a finished run folder (``config.yaml``, ``best.ckpt.npz``, ``result.json``) is skipped
(after checking that it was trained with the same configuration); one with only ``last.ckpt.npz``
resumes from it. The run's ``name`` is a label and is not compared, so a run trained with
`distillrec distill` under the same configuration can be moved into ``OUT/runs/`` and is reused.

**An ensemble teacher**: :mod:`training.experiments.ensemble_study` (members → ensemble → students,
each step in its own process and run folder; ``OUT/results.json|md``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from training.config import DistillConfig, RunConfig, dump_config, load_config
from training.data import Dataset, load_dataset
from training.errors import ConfigError
from training.experiments.report import summarise, write_reports
from training.experiments.schema import SCRATCH, ExperimentConfig, MethodEntry, RunTeacher, StudentSpec, load_experiment, slug
from training.run_folder import RunFolder

if TYPE_CHECKING:
    from training.distill.teacher import TeacherArtifacts


def _run_teacher(exp: ExperimentConfig) -> RunTeacher:
    if not isinstance(exp.teacher, RunTeacher):
        raise ConfigError(f"experiment {exp.name}: its teacher is an ensemble, not a run.")
    return exp.teacher


def _student(exp: ExperimentConfig) -> StudentSpec:
    if exp.student is None:
        raise ConfigError(f"experiment {exp.name}: no student config.")
    return exp.student


def ensure_teacher(exp: ExperimentConfig, out: Path, log: Callable[[str], None]) -> Path:
    """The finished teacher run folder: reused if it exists, otherwise trained (resuming) from its config."""
    from training.runs import train_run

    teacher = _run_teacher(exp)
    path = teacher.run or (out / "teacher")
    folder = RunFolder(path)
    if folder.finished:
        log(f"teacher: reusing {path}")
        return path
    if teacher.config is None:
        raise ConfigError(f"teacher run {path} is not finished (no {folder.missing[0].name}) and the experiment gives no teacher.config to train it.")
    cfg = load_config(teacher.config, teacher.set)
    resume = folder.last.exists()
    log(f"teacher: {'resuming' if resume else 'training'} {teacher.config} into {path}")
    train_run(cfg, path, resume=resume)
    return path


def run_config(exp: ExperimentConfig, label: str, methods: list[dict], overrides: list[str], seed: int, teacher: Path) -> RunConfig:
    """The resolved run config of one (entry, seed)."""
    student = _student(exp)
    cfg = load_config(student.config, [*student.set, *overrides, f"train.seed={seed}", "train.progress=false"])
    update: dict = {"name": f"{exp.name}/{slug(label)}-seed{seed}"}
    if methods:
        update["distill"] = DistillConfig(teacher=teacher, methods=methods)
    else:
        update["distill"] = None
    return cfg.model_copy(update=update)


def _finished(run_dir: Path, cfg: RunConfig) -> dict | None:
    """The run's result.json if it is finished (after checking its configuration), else None."""
    folder = RunFolder(run_dir)
    if not folder.finished:
        return None
    _check_same(run_dir, cfg)
    return json.loads(folder.result.read_text())


def _check_same(run_dir: Path, cfg: RunConfig) -> None:
    from training.runs import same_settings

    if not same_settings(run_dir, cfg):
        raise ConfigError(
            f"{run_dir} was trained with a different configuration than the experiment now describes. "
            "Delete that folder to re-run it, or write the experiment to another --out."
        )


def teacher_summary(teacher_path: Path, dataset: Dataset, student_cfg: RunConfig) -> dict:
    """The teacher's test metrics under the students' protocol, its size and its cost."""
    from training.evaluation import TorchScorer, evaluate
    from training.runs import load_run

    run = load_run(teacher_path, dataset=dataset)
    ec = student_cfg.eval
    res = evaluate(TorchScorer(run.model), dataset, "test", ec.protocol, ec.ks, ec.sampled_negatives, ec.seed)
    return {
        "path": str(teacher_path),
        "model": run.result.get("model"),
        "parameters": run.model.num_parameters(),
        "best_epoch": run.result.get("best_epoch"),
        "seconds_per_epoch": run.result.get("seconds_per_epoch"),
        "test": res.to_dict(),
        "protocol_of_its_own_run": run.result.get("test", {}).get("protocol"),
    }


def run_experiment(
    config_path: str | Path,
    out: str | Path,
    only: list[str] | None = None,
    report_only: bool = False,
    seeds: list[int] | None = None,
    log: Callable[[str], None] = print,
    force: set[str] | None = None,
) -> dict:
    """Runs (or resumes) the experiment, whichever its teacher; returns the content of results.json.

    Args:
        only: restrict the training to these labels ('scratch' included); the report covers every
            finished run anyway (teacher-run studies).
        report_only: train nothing; rebuild the reports from the finished runs.
        seeds: restrict the training to these seeds of the config (so that the seeds of one entry can
            be trained by parallel processes, each on its own run folder; teacher-run studies).
        force: steps to redo even if finished: all, teachers, ensemble, students, a run folder or a
            student label (ensemble studies).
    """
    exp = load_experiment(config_path)
    if exp.ensemble is not None:
        if only or seeds:
            raise ConfigError(
                f"{config_path}: --only and --seed select the entries and seeds of a teacher-run study; this study has an ensemble teacher (use --force STEP to redo a step)."
            )
        from training.experiments.ensemble_study import run_ensemble_study

        return run_ensemble_study(exp, config_path, out, force, report_only, log)
    if force:
        raise ConfigError(f"{config_path}: --force redoes a step of an ensemble study; in this study delete a run folder under OUT/runs/ to re-train it.")
    return _run_seed_study(exp, config_path, Path(out), only, report_only, seeds, log)


def _entries(exp: ExperimentConfig) -> list[MethodEntry]:
    """The table's entries: the scratch student first (no methods, no overrides, every seed), then the methods."""
    entries = [MethodEntry.model_construct(label=SCRATCH, methods=[], set=[], seeds=exp.seeds)]
    return entries + [e.model_copy(update={"seeds": e.seeds or exp.seeds}) for e in exp.methods]


def _selection(exp: ExperimentConfig, entries: list[MethodEntry], only: list[str] | None, seeds: list[int] | None) -> tuple[set[str], set[int]]:
    """The entry slugs and seeds to train (``--only``, ``--seed``), checked against the config."""
    known = {slug(e.label) for e in entries}
    wanted = {slug(o) for o in only} if only else known
    unknown = wanted - known
    if unknown:
        raise ConfigError(f"--only: no entry labelled {sorted(unknown)}; labels: {[e.label for e in entries]}")
    wanted_seeds = set(exp.seeds if seeds is None else seeds)
    if wanted_seeds - set(exp.seeds):
        raise ConfigError(f"--seed: {sorted(wanted_seeds - set(exp.seeds))} not among the experiment's seeds {exp.seeds}")
    return wanted, wanted_seeds


class _StudentTrainer:
    """Trains one (entry, seed) run folder, loading the teacher's artifacts once for all distilled runs."""

    def __init__(self, exp: ExperimentConfig, teacher_path: Path, dataset: Dataset, log: Callable[[str], None]):
        self.exp, self.teacher_path, self.dataset, self.log = exp, teacher_path, dataset, log
        self.artifacts: TeacherArtifacts | None = None

    def __call__(self, label: str, seed: int, run_dir: Path, cfg: RunConfig) -> dict:
        from training.distill.teacher import TeacherArtifacts
        from training.distill.train_student import distill_run
        from training.runs import train_run

        resume = RunFolder(run_dir).last.exists()
        self.log(f"{label} seed {seed}: {'resuming' if resume else 'training'} into {run_dir}")
        t0 = time.perf_counter()
        if cfg.distill is not None:
            if self.artifacts is None:
                self.artifacts = TeacherArtifacts(self.teacher_path, self.dataset)
            result = distill_run(cfg, run_dir, resume=resume, dataset=self.dataset, teacher_artifacts=self.artifacts)
        else:
            result = train_run(cfg, run_dir, resume=resume, dataset=self.dataset)
        metric = self.exp.metric
        self.log(f"{label} seed {seed}: done in {time.perf_counter() - t0:.0f} s, test {metric} = {result['test']['metrics'][metric]:.4f}")
        return result


def _run_seed_study(
    exp: ExperimentConfig, config_path: str | Path, out: Path, only: list[str] | None, report_only: bool, seeds: list[int] | None, log: Callable[[str], None]
) -> dict:
    """The teacher-run study (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.yaml").write_text(Path(config_path).read_text())
    teacher_path = _run_teacher(exp).run or (out / "teacher")
    if not report_only:
        teacher_path = ensure_teacher(exp, out, log)
    student = _student(exp)
    base_cfg = load_config(student.config, student.set)
    dataset = load_dataset(base_cfg.data)
    teacher = teacher_summary(teacher_path, dataset, base_cfg)
    entries = _entries(exp)
    wanted, wanted_seeds = _selection(exp, entries, only, seeds)
    train = _StudentTrainer(exp, teacher_path, dataset, log)

    runs: list[dict] = []
    unfinished: list[tuple[dict, Path, RunConfig]] = []
    for entry in entries:
        label, methods = entry.label, entry.methods
        for seed in entry.seeds or exp.seeds:
            run_dir = out / "runs" / f"{slug(label)}-seed{seed}"
            cfg = run_config(exp, label, methods, entry.set, seed, teacher_path)
            record = {"label": label, "seed": seed, "path": str(run_dir), "methods": methods, "result": _finished(run_dir, cfg)}
            if record["result"] is None and not report_only and slug(label) in wanted and seed in wanted_seeds:
                record["result"] = train(label, seed, run_dir, cfg)
            runs.append(record)
            if record["result"] is None:
                unfinished.append((record, run_dir, cfg))
            else:
                _write(exp, out, teacher, runs, dataset, base_cfg)
    # runs that a parallel process (another --seed / --only) finished after this one passed them
    for record, run_dir, cfg in unfinished:
        record["result"] = _finished(run_dir, cfg)
    return _write(exp, out, teacher, runs, dataset, base_cfg)


def _write(exp: ExperimentConfig, out: Path, teacher: dict, runs: list[dict], dataset: Dataset, base_cfg: RunConfig) -> dict:
    summary = summarise(exp, teacher, runs)
    results = {
        "experiment": exp.name,
        "description": exp.description,
        "config": exp.model_dump(mode="json"),
        "data": dataset.stats(),
        "protocol": base_cfg.eval.model_dump(mode="json"),
        "metric": exp.metric,
        "teacher": teacher,
        "summary": summary,
        "runs": [{**r, "result": r["result"]} for r in runs],
        "student_config": dump_config(base_cfg),
    }
    write_reports(out, results)
    return results
