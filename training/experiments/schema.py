"""The experiment config, read by :func:`training.yaml_loader.load_yaml` (unknown keys are errors).

```yaml
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
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from training.config import Strict
from training.yaml_loader import load_yaml

SCRATCH = "scratch"


class TeacherSpec(Strict):
    """The teacher: an existing run folder, a config to train, or both (train into ``run`` if unfinished)."""

    run: Path | None = Field(None, description="teacher run folder; reused when finished")
    config: Path | None = Field(None, description="teacher run config, trained when `run` is missing or unfinished")
    set: list[str] = Field(default_factory=list, description="overrides for training the teacher")

    @model_validator(mode="after")
    def _one_needed(self) -> "TeacherSpec":
        if self.run is None and self.config is None:
            raise ValueError("teacher needs `run` (a finished run folder) or `config` (to train one)")
        return self


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
    teacher: TeacherSpec
    student: StudentSpec
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    metric: str = "ndcg@10"
    report: list[str] = Field(default_factory=list, description="metrics shown as extra columns (mean ± std)")
    methods: list[MethodEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_labels(self) -> "ExperimentConfig":
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
    return load_yaml(ExperimentConfig, path, what="experiment config", where="configs/experiments/")
