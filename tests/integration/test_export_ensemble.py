"""Ensemble bundles: members exported inside the bundle, one manifest with role ``ensemble``."""

from __future__ import annotations

import json

import pytest
from svc_support import ensemble_run, exported

from service.bundle.artifacts import read_manifest, verify_files
from service.loading import load_recommender
from training.export import ExportError, export_run


def test_ensemble_bundle_layout():
    folder = exported("ensemble")
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    assert (manifest.role, manifest.family, manifest.score_function) == ("ensemble", "ensemble", "rank_aggregation")
    spec = manifest.ensemble
    assert [m.path for m in spec.members] == ["members/0", "members/1"] and [m.weight for m in spec.members] == [1.0, 2.0]
    assert (spec.temperature, spec.list_length) == (10.0, 20)
    members = [read_manifest(folder / m.path) for m in spec.members]
    assert [m.family for m in members] == ["mf", "neumf"]
    assert manifest.parameters == sum(m.parameters for m in members)
    listed = {f.path for f in manifest.files}
    assert {"members/0/model.onnx", "members/0/items.faiss", "members/0/manifest.json", "members/1/model.onnx", "user_ids.npy", "seen.npz"} <= listed
    assert manifest.metrics["test"]["protocol"] == "full"


def test_ensemble_recommender_merges_member_lists():
    rec = load_recommender("ensemble", exported("ensemble"))
    assert [m.family for m in rec.members] == ["mf", "neumf"]
    out = rec.recommend("1", 30)  # k beyond list_length (20): members contribute 30 each, 30 items come back
    ids = [i for i, _ in out.items]
    assert len(ids) == len(set(ids)) == 30
    scores = [s for _, s in out.items]
    assert scores == sorted(scores, reverse=True) and scores[0] <= 1.0 + 2.0


def test_member_paths_relative_or_absolute_and_bad_spec_errors(tmp_path):
    spec = json.loads((ensemble_run() / "ensemble.json").read_text())
    assert spec["members"][0]["run"].startswith("/") and not spec["members"][1]["run"].startswith("/")
    bad = tmp_path / "bad-ensemble"
    bad.mkdir()
    (bad / "ensemble.json").write_text(json.dumps({"kind": "ensemble", "members": [], "temperature": 10}))
    with pytest.raises(ExportError, match=r"bad-ensemble/ensemble.json: invalid ensemble description: members"):
        export_run(bad, tmp_path / "models", "bad")
    (bad / "ensemble.json").write_text(json.dumps({"kind": "ensemble", "members": [{"run": "missing-run"}]}))
    with pytest.raises(ExportError, match=r"member 0 run folder .*missing-run does not exist"):
        export_run(bad, tmp_path / "models", "bad")
    with pytest.raises(ExportError, match="ensemble folder"):
        export_run(ensemble_run(), tmp_path / "models", "e", role="student")
    assert not (tmp_path / "models" / "bad").exists(), "failed exports leave nothing behind, not even the bundle folder"
