"""``distillrec export --refit-all``: the last step of a production pipeline, before export.

Model selection (early stopping on validation) picks an epoch count; the selected run never saw
the held-out interactions. Refitting trains the same config again, from the same seed, on **every**
interaction (training, validation and test) for exactly the selected run's number of epochs
(``best_epoch + 1``), without selection, and the bundle serves that model. The bundle's offline
metrics stay those of the selected run (a refit model has no held-out data left to measure on);
``metrics.refit`` says how it was trained. Distilled runs are not refitted (their teacher and KD
terms would have to be refitted too); export them as they are.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from training.data.dataset import Dataset
from training.export.bundle_writer import all_interactions
from training.export.errors import ExportError
from training.runs import LoadedRun, load_run, train_run


def full_dataset(dataset: Dataset) -> Dataset:
    """``dataset`` with every interaction in ``train`` (validation and test kept, for the record)."""
    full = all_interactions(dataset).astype(dataset.train.dtype)
    return dataclasses.replace(dataset, train=full, split=f"{dataset.split}+refit-all", _cache={})


def refit_all(run_path: Path, work: Path) -> LoadedRun:
    """Refits the finished run in ``run_path`` on every interaction (training folder ``work``).

    Returns a :class:`LoadedRun` with the refitted model and the full dataset, but the selected
    run's path, config and result (plus ``result["refit"]``), so that the manifest keeps its metrics.
    """
    run = load_run(run_path)
    if run.config.distill is not None or run.result.get("kd"):
        raise ExportError(
            f"--refit-all: {run_path} is a distilled run; refitting it would need its teacher and KD terms refitted too. Export it without --refit-all."
        )
    best = run.result.get("best_epoch")
    if not isinstance(best, int) or best < 0:
        raise ExportError(f"--refit-all: {run_path / 'result.json'} records no best_epoch, so the epoch count to refit with is unknown. Retrain the run.")
    epochs = best + 1
    dataset = full_dataset(run.dataset)
    train = run.config.train.model_copy(update={"epochs": epochs, "progress": False})
    config = run.config.model_copy(
        update={"train": train, "eval": run.config.eval.model_copy(update={"every": epochs})}
    )  # one evaluation, at the end: the last epoch is kept
    train_run(config, work, dataset=dataset)
    refitted = load_run(work, dataset=dataset)
    refit = {
        "epochs": epochs,
        "interactions": int(dataset.train.nnz),
        "note": "trained on every interaction for the selected run's epoch count; 'valid' and 'test' are the selected run's metrics",
    }
    return LoadedRun(run.path, run.config, dataset, refitted.model, {**run.result, "refit": refit})
