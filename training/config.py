"""Run configuration: YAML → ``yaml.safe_load`` → pydantic (:mod:`training.yaml_loader`). Unknown keys are errors; nothing is executed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from training.yaml_loader import load_yaml, parse_overrides, set_dotted, validate_tree

Family = Literal["mf", "lightgcn", "neumf", "dae"]
DEFAULT_LOSS = {"mf": "bpr", "lightgcn": "bpr", "neumf": "bce", "dae": "bpr"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(Strict):
    """Where the interactions come from and how they are filtered and split."""

    source: Literal["ml-100k", "file", "citeulike", "presplit"] = "ml-100k"
    path: Path | None = Field(None, description="file (file, citeulike) or folder with train/valid/test files (presplit)")
    name: str | None = None
    user_col: str = "user"
    item_col: str = "item"
    rating_col: str | None = None
    timestamp_col: str | None = Field(
        None,
        description="optional column of times: numbers (e.g. Unix seconds) or ISO 8601 dates / date-times "
        "(2024-05-01, 2024-05-01T13:45:00, with fractional seconds, 'Z' or an offset such as +02:00; no offset means UTC)",
    )
    sep: str | None = None
    header: bool = True
    min_rating: float | None = Field(None, description="keep ratings >= this (implicit feedback from explicit ratings)")
    min_user_interactions: int = Field(0, ge=0, description="k-core: drop users with fewer interactions")
    min_item_interactions: int = Field(0, ge=0, description="k-core: drop items with fewer interactions")
    split: Literal["loo", "ratio"] = "loo"
    valid_ratio: float = Field(0.2, ge=0, lt=1)
    test_ratio: float = Field(0.2, gt=0, lt=1)
    drop_cold_targets: bool = Field(False, description="ratio split: drop valid/test items unseen in training")
    seed: int = 0

    @model_validator(mode="after")
    def _path_needed(self) -> DataConfig:
        if self.source != "ml-100k" and self.path is None:
            raise ValueError(f"data.path is required for data.source '{self.source}'")
        return self


class ModelConfig(Strict):
    """The recommender architecture. ``layers``: LightGCN propagation layers / NeuMF MLP layers."""

    family: Family = "mf"
    dim: int = Field(64, ge=1)
    layers: int = Field(3, ge=0)
    init_std: float = Field(0.01, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    tower: Literal["none", "mlp"] = Field(
        "none",
        description="mf only: 'mlp' scores <t(e_u), t(e_i)> through one shared output tower t (d -> d/2 -> d/4 with ReLU and "
        "`dropout`, then a linear layer; ConCF's target-head network); the export holds the d/4-dimensional tower outputs",
    )

    @model_validator(mode="after")
    def _tower_family(self) -> ModelConfig:
        if self.tower != "none" and self.family != "mf":
            raise ValueError(f"model.tower '{self.tower}' applies to model.family 'mf' only (got '{self.family}'); remove model.tower or use family mf")
        return self


class TrainConfig(Strict):
    """The optimisation loop shared by teachers, scratch students and distilled students."""

    loss: Literal["bpr", "bce"] | None = Field(None, description="base loss; default bpr for mf/lightgcn, bce for neumf")
    base_loss_weight: float = Field(1.0, ge=0, description="0 trains on the distillation terms only (HetComp)")
    epochs: int = Field(1000, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    negatives: int = Field(1, ge=1, description="uniform negatives per positive, redrawn every epoch")
    seed: int = 0
    checkpoint_every: int = Field(0, ge=0, description="also keep a checkpoint every N epochs (0: only the best)")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads (default: timed on the first batches at the CPUs available to the process, from its CPU affinity and cgroup quota, and at fewer, keeping the fastest)",
    )
    progress: bool = True
    engine: Literal["auto", "torch", "fused"] = Field(
        "torch",
        description="training loop: 'torch' (the default) uses autograd (every model and distillation method; the published "
        "results were trained with it); 'fused' runs sampling, scoring and the Adam update of plain BPR matrix factorisation in "
        "one compiled loop (same algorithm, another random stream, several times faster); 'auto' picks fused where it applies "
        "(family mf, loss bpr, no distillation methods, one process), else torch",
    )
    adam_rows: Literal["all", "batch", "auto"] = Field(
        "all",
        description="which embedding rows an Adam step updates: 'all' (the default; torch's dense Adam: every row, every step), "
        "'batch' (only the rows that get a gradient: a step's cost no longer grows with the tables, but the other rows keep "
        "their values and skip the L2 decay, a different optimisation that trains measurably worse; on the torch loop the "
        "embedding tables then get row gradients, one process only) or 'auto': 'all' while the two tables together hold no "
        "more rows than one mini-batch can touch (batch_size × (2 + negatives)), else 'batch'",
    )

    def adam_rows_for(self, n_users: int, n_items: int) -> str:
        """``adam_rows`` as the training loops apply it to tables of ``n_users`` and ``n_items`` rows:
        'all' or 'batch'. 'auto' keeps the dense step while a mini-batch can touch every row (there it
        costs at most what the per-row step would); beyond that the dense step grows with the tables
        while the batch's work does not."""
        if self.adam_rows != "auto":
            return self.adam_rows
        return "all" if n_users + n_items <= self.batch_size * (2 + self.negatives) else "batch"


class EvalConfig(Strict):
    """How models are evaluated and selected. ``select`` is the validation metric for early stopping."""

    protocol: Literal["full", "sampled"] = "full"
    sampled_negatives: int = Field(499, ge=1)
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    select: str = "ndcg@10"
    patience: int = Field(20, ge=1, description="evaluations without improvement before stopping")
    stop_on: list[str] | None = Field(
        None,
        description="validation metrics early stopping watches: an evaluation is bad only when none of them improved on its own best "
        "(default: [select]; the DE-RRD papers' rule is [hr@5, hr@10, hr@20] with patience 20)",
    )
    every: int = Field(1, ge=1, description="evaluate every N epochs")
    seed: int = Field(0, description="seed of the sampled protocol's negative candidates")

    @field_validator("select")
    @classmethod
    def _metric_name(cls, v: str) -> str:
        return _metric_name("eval.select", v)

    @field_validator("stop_on")
    @classmethod
    def _metric_names(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("eval.stop_on must list at least one metric (or be left out: the selection metric)")
        return None if v is None else [_metric_name("eval.stop_on", m) for m in v]

    @model_validator(mode="after")
    def _k_listed(self) -> EvalConfig:
        ks = {int(m.partition("@")[2]) for m in [self.select, *(self.stop_on or [])]}
        if not ks <= set(self.ks):
            self.ks = sorted({*self.ks, *ks})
        return self

    @property
    def stop_metrics(self) -> list[str]:
        """The metrics early stopping watches."""
        return self.stop_on or [self.select]


def _metric_name(field: str, v: str) -> str:
    name, _, k = v.partition("@")
    if name not in ("hr", "recall", "ndcg", "mrr") or not k.isdigit():
        raise ValueError(f"{field} '{v}' must look like ndcg@10, hr@10, recall@20 or mrr@10")
    return v


class DistillConfig(Strict):
    """Knowledge distillation: the teacher run and the KD methods (validated by the method registry)."""

    teacher: Path | None = Field(None, description="teacher run folder (overridden by --teacher)")
    methods: list[dict[str, Any]] = Field(default_factory=list)


class RunConfig(Strict):
    """One training run (teacher, scratch student or distilled student)."""

    name: str | None = None
    description: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    distill: DistillConfig | None = None

    def base_loss(self) -> str:
        return self.train.loss or DEFAULT_LOSS[self.model.family]


def config_from_dict(tree: dict, origin: str = "<config>", overrides: list[str] | None = None) -> RunConfig:
    """Validates a config tree (after applying ``--set`` overrides)."""
    return validate_tree(RunConfig, tree, origin, overrides)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Reads a YAML run config with ``yaml.safe_load`` and validates it."""
    return load_yaml(RunConfig, path, overrides)


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (paths as strings), suitable for ``load_config``."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "ModelConfig",
    "RunConfig",
    "Strict",
    "TrainConfig",
    "config_from_dict",
    "dump_config",
    "load_config",
    "parse_overrides",
    "set_dotted",
]
