"""``export --refit-all``: the selected run's config retrained on every interaction for its epoch count."""

from __future__ import annotations

import json

import numpy as np
import pytest
from svc_support import ensemble_run, trained_run

from service.bundle.artifacts import read_manifest
from service.loading import load_recommender
from training.export import ExportError, export_run
from training.runs import load_run


def test_refit_all_trains_on_every_interaction_and_keeps_the_selected_metrics(tmp_path):
    run_path = trained_run("mf-student")
    run = load_run(run_path)
    plain = export_run(run_path, tmp_path, "plain").path
    refit = export_run(run_path, tmp_path, "refit", refit_all=True).path
    m, p = read_manifest(refit), read_manifest(plain)
    everything = run.dataset.train.nnz + run.dataset.valid.nnz + run.dataset.test.nnz
    assert m.metrics["refit"]["epochs"] == json.loads((run_path / "result.json").read_text())["best_epoch"] + 1
    assert m.metrics["refit"]["interactions"] == everything
    assert m.metrics["valid"] == p.metrics["valid"] and m.metrics["test"] == p.metrics["test"], "offline metrics of the selected run"
    assert m.data.fingerprint != p.data.fingerprint and m.source_run == p.source_run
    assert int(np.load(refit / "popularity.npy").sum()) == everything
    refitted, selected = load_recommender("refit", refit), load_recommender("plain", plain)
    users = np.arange(20, dtype=np.int64)
    assert not np.allclose(refitted.user_vectors(users), selected.user_vectors(users)), "another model: trained on more data"
    assert refitted.recommend("1", 10).items, "the refitted bundle serves"


def test_refit_all_refuses_ensembles(tmp_path):
    with pytest.raises(ExportError, match="--refit-all.*ensemble"):
        export_run(ensemble_run(), tmp_path, "ens", refit_all=True)
    assert not (tmp_path / "ens").exists()
