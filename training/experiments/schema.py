"""The experiment config of both studies, read by :func:`training.yaml_loader.load_yaml` (unknown keys
are errors). Its ``teacher`` is either one run or an ensemble of runs.

**One teacher run**: the scratch student and every method entry over seeds (mean ± std tables)::

    name: citeulike-loo
    description: DE-RRD Table 2, CiteULike, BPR 200 → 20, LOO + 499 sampled negatives
    teacher:
      run: runs/citeulike-bpr-teacher          # reused when finished, otherwise trained here from `config`
      config: configs/citeulike/bpr-teacher.yaml
      set: []                                  # --set style overrides for training the teacher
    student:
      config: configs/citeulike/bpr-student.yaml
      set: [train.threads=1]                   # overrides for every student run
    seeds: [0]
    metric: ndcg@10                            # headline metric (table, chart, gains)
    report: [hr@5, ndcg@5, hr@10, ndcg@10, ndcg@20]
    methods:                                   # the scratch student is always run first
      - label: DE
        methods: [{name: de, weight: 0.01}]
        set: []                                # overrides for this entry only
        seeds: [0]                             # this entry's seeds (default: the experiment's)

**An ensemble teacher**: heterogeneous member runs → their rank-aggregation ensemble → students,
each step with its own run config and run folder (one table row each, with scoring time and peak
memory)::

    name: hc-ml100k
    teacher:
      members:
        - {label: BPR-MF, config: configs/hetcomp/ml100k/teacher-bpr.yaml, run: runs/hc-ml100k-teacher-bpr}
        - …
      ensemble: {config: configs/hetcomp/ml100k-ensemble.yaml, run: runs/hc-ml100k-ensemble}
    students:
      - {label: scratch, config: configs/hetcomp/ml100k/student-scratch.yaml, run: runs/hc-ml100k-student-scratch}
      - {label: HetComp, config: configs/hetcomp/ml100k/student-hetcomp.yaml, run: runs/hc-ml100k-student-hetcomp}
    set: [train.threads=1]                     # overrides for every training step
    metric: recall@10                          # the table's columns: metric, then report
    report: [ndcg@10, recall@50, ndcg@50]
    timing: {users: 1000, k: 50, repeats: 5, threads: 1}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from training.config import Strict
from training.yaml_loader import load_yaml

SCRATCH = "scratch"


class RunTeacher(Strict):
    """The teacher: an existing run folder, a config to train, or both (train into ``run`` if unfinished)."""

    run: Path | None = Field(None, description="teacher run folder; reused when finished")
    config: Path | None = Field(None, description="teacher run config, trained when `run` is missing or unfinished")
    set: list[str] = Field(default_factory=list, description="overrides for training the teacher")

    @model_validator(mode="after")
    def _one_needed(self) -> RunTeacher:
        if self.run is None and self.config is None:
            raise ValueError("teacher needs `run` (a finished run folder) or `config` (to train one)")
        return self


class Step(Strict):
    """One training step of an ensemble study: its run config and the run folder it writes."""

    config: Path
    run: Path
    label: str | None = None


class EnsembleTeacher(Strict):
    """Heterogeneous teacher runs and the rank-aggregation ensemble built from them."""

    members: list[Step] = Field(min_length=1, description="the member teachers, trained first")
    ensemble: Step = Field(description="the ensemble config (its members: these runs) and its run folder")


def _teacher_kind(tree: Any) -> str:
    keys = set(tree) if isinstance(tree, dict) else set(vars(tree))
    return "ensemble" if keys & {"members", "ensemble"} else "run"


Teacher = Annotated[Annotated[RunTeacher, Tag("run")] | Annotated[EnsembleTeacher, Tag("ensemble")], Discriminator(_teacher_kind)]


class TimingSpec(Strict):
    """How the ensemble study times every model's top-K scoring."""

    users: int = Field(1000, ge=1)
    k: int = Field(50, ge=1)
    repeats: int = Field(5, ge=1)
    threads: int | None = Field(1, ge=1)


class StudentSpec(Strict):
    config: Path = Field(..., description="the student's run config (model, data, train, eval)")
    set: list[str] = Field(default_factory=list, description="overrides for every student run")


class MethodEntry(Strict):
    """One row of the table: a label and the KD methods combined in it."""

    label: str
    methods: list[dict[str, Any]] = Field(..., min_length=1)
    set: list[str] = Field(default_factory=list, description="overrides for this entry's runs")
    seeds: list[int] | None = Field(None, min_length=1, description="this entry's seeds, a subset of the experiment's (default: all of them)")

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("label must not be empty")
        if v.strip().lower() == SCRATCH:
            raise ValueError("'scratch' is reserved for the student without distillation (always run)")
        return v.strip()


class ExperimentConfig(Strict):
    name: str
    description: str | None = None
    teacher: Teacher
    student: StudentSpec | None = Field(None, description="one teacher run: the student every entry trains")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    metric: str = "ndcg@10"
    report: list[str] = Field(default_factory=list, description="metrics shown as extra columns (mean ± std)")
    methods: list[MethodEntry] = Field(default_factory=list)
    students: list[Step] = Field(default_factory=list, description="ensemble teacher: each student's run config and run folder")
    set: list[str] = Field(default_factory=list, description="ensemble teacher: overrides for every training step")
    timing: TimingSpec = Field(default_factory=TimingSpec, description="ensemble teacher: how scoring is timed")

    @property
    def ensemble(self) -> EnsembleTeacher | None:
        """The ensemble teacher, when this is an ensemble study."""
        return self.teacher if isinstance(self.teacher, EnsembleTeacher) else None

    @property
    def metrics(self) -> list[str]:
        """The headline metric, then the reported ones."""
        return [self.metric, *[m for m in self.report if m != self.metric]]

    @model_validator(mode="after")
    def _variant(self) -> ExperimentConfig:
        given = self.model_fields_set
        if self.ensemble is None:
            wrong = sorted(given & {"students", "set", "timing"})
            if self.student is None:
                raise ValueError("student: required with a teacher run (the student config every entry trains)")
        else:
            wrong = sorted(given & {"student", "methods", "seeds"})
        if wrong:
            kind = "a teacher run (teacher.run / teacher.config)" if self.ensemble is None else "an ensemble teacher (teacher.members)"
            raise ValueError(f"{', '.join(wrong)}: not used with {kind}; see configs/experiments/ and configs/hetcomp/ for the two shapes")
        return self

    @model_validator(mode="after")
    def _unique_labels(self) -> ExperimentConfig:
        slugs = [slug(m.label) for m in self.methods]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"method labels must be distinct (after slugging): {slugs}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        for m in self.methods:
            if m.seeds is not None and (not set(m.seeds) <= set(self.seeds) or len(set(m.seeds)) != len(m.seeds)):
                raise ValueError(f"methods[{m.label!r}].seeds {m.seeds}: must be distinct seeds among the experiment's {self.seeds}")
        return self


def slug(label: str) -> str:
    """A folder-safe name for a label: 'DE+RRD (top-K)' → 'de-rrd-top-k'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "method"


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Reads and validates an experiment config (clear errors naming the file and the key)."""
    return load_yaml(ExperimentConfig, path, what="experiment config", where="configs/experiments/ and configs/hetcomp/")
