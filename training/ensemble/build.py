"""``distillrec ensemble build``: member runs → ensemble run folder (ensemble.json + result.json).

The ensemble config (YAML, validated like run configs; member paths relative to the working
directory)::

    name: hc-ml100k-ensemble
    members:
      - {run: runs/hc-ml100k-teacher-bpr, weight: 1.0}
      - {run: runs/hc-ml100k-teacher-lightgcn}
    temperature: 10.0        # T of exp(−p / T)
    list_length: 100         # items each member contributes / length of the merged list
    eval: {protocol: full, ks: [10, 50]}
    trajectory: {fractions: [0.1, 0.3, 0.6], top_n: 100}   # HetComp's per-member trajectories; null: skip
    tune: {metric: recall@50, temperatures: [10, 20, 50], weights: [0.5, 1.0]}   # optional, on validation

Building (optionally) selects the temperature and member weights on validation, evaluates every
member and the ensemble on validation and test, writes the members' trajectories
(``RUN/trajectory.npz``) unless they already exist with the same settings, and writes
``ensemble.json`` (with the selected temperature and weights) last.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from training.config import Strict
from training.ensemble.teacher import Ensemble, write_ensemble_json
from training.ensemble.trajectory import checkpoint_stamp, export_trajectory, trajectory_meta
from training.errors import ConfigError
from training.evaluation import evaluate
from training.yaml_loader import load_yaml


class MemberSpec(Strict):
    run: Path = Field(description="member run folder (a finished `distillrec train` run)")
    weight: float = Field(1.0, gt=0)


class EnsembleEval(Strict):
    protocol: Literal["full", "sampled"] = "full"
    ks: list[int] = Field(default_factory=lambda: [10, 50])
    sampled_negatives: int = Field(499, ge=1)
    seed: int = 0


class TrajectorySpec(Strict):
    fractions: list[float] = Field(default_factory=lambda: [0.1, 0.3, 0.6], description="earlier checkpoints at these fractions of the best epoch")
    top_n: int | None = Field(None, ge=1, description="items kept per user and checkpoint (default: list_length)")


class TuneSpec(Strict):
    """Choose the temperature and the member weights on **validation** (the test set is never looked at)."""

    metric: str = Field("recall@50", description="validation metric to maximise (must be in eval.ks)")
    temperatures: list[float] = Field(default_factory=lambda: [10.0], min_length=1)
    weights: list[float] = Field(default_factory=lambda: [1.0], min_length=1, description="candidate weights of each member")


class EnsembleConfig(Strict):
    name: str | None = None
    description: str | None = None
    members: list[MemberSpec] = Field(min_length=1)
    temperature: float = Field(10.0, gt=0)
    list_length: int = Field(100, ge=1)
    eval: EnsembleEval = Field(default_factory=EnsembleEval)
    trajectory: TrajectorySpec | None = Field(default_factory=TrajectorySpec)
    tune: TuneSpec | None = Field(None, description="select temperature and weights on validation (null: use the given ones)")


def load_ensemble_config(path: str | Path, overrides: list[str] | None = None) -> EnsembleConfig:
    """Reads and validates an ensemble YAML (``--set key=value`` overrides allowed)."""
    return load_yaml(EnsembleConfig, path, overrides, what="ensemble config", where="configs/hetcomp/")


def ensure_trajectories(ens: Ensemble, spec: TrajectorySpec, ks: list[int], log=print) -> list[dict]:
    """Exports each member's trajectory unless one with the same settings exists; returns their metadata."""
    top_n = spec.top_n or ens.list_length
    metas = []
    for m in ens.runs:
        meta = trajectory_meta(m.path)
        fresh = (
            meta is not None
            and meta.get("data_fingerprint") == ens.dataset.fingerprint()
            and meta.get("top_n") == top_n
            and meta.get("fractions") == list(spec.fractions)
            and meta.get("epochs", [None])[-1] == m.result.get("best_epoch")
            and meta.get("source") == checkpoint_stamp(m.path / "best.ckpt.npz")
        )
        if not fresh:
            log(f"trajectory: {m.path} (fractions {spec.fractions}, top-{top_n})")
            export_trajectory(m.path, ens.dataset, spec.fractions, top_n, ks)
            meta = trajectory_meta(m.path)
        metas.append(meta)
    return metas


def tune_ensemble(ens: Ensemble, spec: TuneSpec, ec: EnsembleEval, log=print) -> dict:
    """Grid search over temperatures × member weights on validation; sets the best on ``ens``.

    Weight vectors are scale-free, so only those whose largest weight is the grid's largest are
    tried. Ties keep the earlier candidate (the temperatures in the given order, equal weights first).
    Returns the search record for result.json.
    """
    if spec.metric.partition("@")[2] not in {str(k) for k in ec.ks}:
        raise ConfigError(f"tune.metric {spec.metric} needs its cut-off in eval.ks {ec.ks}")
    top = max(spec.weights)
    combos = [w for w in itertools.product(spec.weights, repeat=len(ens.scorers)) if max(w) == top]
    combos.sort(key=lambda w: len(set(w)))  # equal weights first
    ens.memoize_member_lists(True)
    tried, best = [], None
    for t in spec.temperatures:
        for w in combos:
            ens.temperature, ens.weights = float(t), [float(x) for x in w]
            value = evaluate(ens, ens.dataset, "valid", ec.protocol, ec.ks, ec.sampled_negatives, ec.seed).metrics[spec.metric]
            tried.append({"temperature": float(t), "weights": list(map(float, w)), spec.metric: value})
            if best is None or value > best[spec.metric]:
                best = tried[-1]
    ens.memoize_member_lists(False)
    ens.temperature, ens.weights = best["temperature"], best["weights"]
    log(f"tune: {len(tried)} candidates; best on valid {spec.metric} = {best[spec.metric]:.4f} at T = {best['temperature']}, weights {best['weights']}")
    return {"metric": spec.metric, "part": "valid", "selected": best, "candidates": tried}


def build_ensemble(cfg: EnsembleConfig, out: str | Path, log=print) -> dict:
    """Builds the ensemble run folder ``out``; returns its result.json content."""
    out = Path(out)
    runs = [m.run for m in cfg.members]
    weights = [m.weight for m in cfg.members]
    ens = Ensemble.from_runs(runs, weights, cfg.temperature, cfg.list_length)
    ec = cfg.eval
    tuning = tune_ensemble(ens, cfg.tune, ec, log) if cfg.tune is not None else None
    trajectories = ensure_trajectories(ens, cfg.trajectory, ec.ks, log) if cfg.trajectory is not None else None
    members = []
    for m, scorer in zip(ens.runs, ens.scorers):
        members.append(
            {
                "run": str(m.path),
                "family": m.model.family,
                "parameters": m.model.num_parameters(),
                "valid": evaluate(scorer, ens.dataset, "valid", ec.protocol, ec.ks, ec.sampled_negatives, ec.seed).to_dict(),
                "test": evaluate(scorer, ens.dataset, "test", ec.protocol, ec.ks, ec.sampled_negatives, ec.seed).to_dict(),
            }
        )
    valid = evaluate(ens, ens.dataset, "valid", ec.protocol, ec.ks, ec.sampled_negatives, ec.seed).to_dict()
    test = evaluate(ens, ens.dataset, "test", ec.protocol, ec.ks, ec.sampled_negatives, ec.seed).to_dict()
    best = {k: max(mm["test"]["metrics"][k] for mm in members) for k in test["metrics"]}
    result = {
        "name": cfg.name or out.name,
        "kind": "ensemble",
        "dataset": ens.dataset.stats(),
        "model": ens.describe(),
        "valid": valid,
        "test": test,
        "members": members,
        "best_member_test": best,
        "beats_best_member_test": {k: bool(test["metrics"][k] > best[k]) for k in best if not k.startswith("coverage")},
        "trajectories": [{"run": str(m.path), "epochs": t["epochs"], "valid": t["valid"]} for m, t in zip(ens.runs, trajectories)] if trajectories else None,
        "tuning": tuning,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    write_ensemble_json(out, runs, ens.weights, ens.temperature, cfg.list_length)
    return result
