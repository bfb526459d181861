"""``distillrec export``: bundle layout, manifest, self-checks, atomic publishing."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from svc_support import exported, trained_run

from distillrec.cli import main as cli_main
from service.bundle.artifacts import LATEST, MANIFEST, read_latest, read_manifest, verify_files
from training.export import ExportError, IndexOptions, export_run
from training.runs import load_run


def test_student_bundle_layout_and_manifest():
    folder = exported("student")
    manifest = read_manifest(folder)
    verify_files(folder, manifest)  # every listed file exists with its sha256
    listed = {f.path for f in manifest.files}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    assert listed == on_disk == {"model.onnx", "items.faiss", "item_vectors.npy", "user_ids.npy", "item_ids.npy", "seen.npz", "popularity.npy"}
    assert read_latest(folder.parent) == folder
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "staging folders must not survive a publish"

    run = load_run(trained_run("mf-student"))
    assert (manifest.role, manifest.family, manifest.dim, manifest.score_function) == ("student", "mf", 16, "inner_product")
    assert manifest.parameters == run.model.num_parameters()
    assert manifest.data.fingerprint == run.dataset.fingerprint()
    assert (manifest.data.n_users, manifest.data.n_items) == (943, 1682)
    assert manifest.onnx.kind == "user_tower" and manifest.onnx.max_abs_diff <= 1e-4
    assert isinstance(manifest.onnx.inputs[0].shape[0], str), "the batch axis must be dynamic"
    assert manifest.index.kind == "flat" and manifest.index.exact and manifest.index.recall_at_10 == 1.0
    assert manifest.metrics["test"]["protocol"] == "full" and "ndcg@10" in manifest.metrics["test"]["metrics"]
    assert manifest.select == "ndcg@10" and manifest.offline_metric("valid") == run.result["valid"]["metrics"]["ndcg@10"]
    assert {"torch", "onnxruntime", "faiss-cpu"} <= set(manifest.libraries)


def test_arrays_load_without_pickle_and_match_the_data():
    folder = exported("student")
    run = load_run(trained_run("mf-student"))
    assert np.load(folder / "user_ids.npy", allow_pickle=False).tolist() == run.dataset.user_ids.tolist()
    assert np.load(folder / "item_ids.npy", allow_pickle=False).tolist() == run.dataset.item_ids.tolist()
    with np.load(folder / "seen.npz", allow_pickle=False) as seen:
        full = (run.dataset.train + run.dataset.valid + run.dataset.test).tocsr()
        full.sort_indices()
        assert np.array_equal(seen["indptr"], full.indptr) and np.array_equal(seen["indices"], full.indices), "every known interaction, held-out ones too"
        assert seen["indptr"][-1] == run.dataset.train.nnz + run.dataset.valid.nnz + run.dataset.test.nnz
    assert np.array_equal(np.load(folder / "popularity.npy", allow_pickle=False), run.dataset.item_popularity())
    with torch.no_grad():
        items = run.model.representations()[1].numpy()
    assert np.array_equal(np.load(folder / "item_vectors.npy", allow_pickle=False), items)


@pytest.mark.parametrize("batch", [1, 7, 943])
def test_user_tower_has_a_dynamic_batch_axis(batch):
    folder = exported("student")
    run = load_run(trained_run("mf-student"))
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    users = np.arange(batch, dtype=np.int64)[::-1].copy()
    got = sess.run(None, {"users": users})[0]
    assert got.shape == (batch, 16)
    np.testing.assert_allclose(got, run.model.user_emb.weight.detach().numpy()[users], atol=1e-6)


def test_lightgcn_tower_holds_the_propagated_table():
    folder = exported("lightgcn")
    run = load_run(trained_run("lightgcn-teacher"))
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"users": np.arange(run.dataset.n_users, dtype=np.int64)})[0]
    with torch.no_grad():
        final_users, _ = run.model.representations()
    raw = run.model.embedding.weight.detach().numpy()[: run.dataset.n_users]
    np.testing.assert_allclose(got, final_users.numpy(), atol=1e-5)
    assert np.abs(got - raw).max() > 1e-3, "the tower must serve the propagated vectors, not the layer-0 embeddings"
    assert read_manifest(folder).constructor["layers"] == 2


def test_neumf_exports_a_candidate_scorer():
    folder = exported("neumf")
    manifest = read_manifest(folder)
    assert manifest.score_function == "learned" and manifest.onnx.kind == "scorer" and manifest.index is None
    assert "items.faiss" not in {f.path for f in manifest.files}
    run = load_run(trained_run("neumf-teacher"))
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    users = np.array([0, 5, 942], dtype=np.int64)
    items = np.array([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [1681, 0, 7, 7, 100]], dtype=np.int64)
    got = sess.run(None, {"users": users, "items": items})[0]
    with torch.no_grad():
        ref = run.model.score_candidates(torch.from_numpy(users), torch.from_numpy(items)).numpy()
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_are_tuned_to_the_recall_target(tmp_path, kind):
    result = export_run(trained_run("mf-student"), tmp_path, "approx", IndexOptions(kind=kind))
    spec = result.manifest.index
    assert spec.kind == kind and not spec.exact and spec.recall_at_10 >= 0.95
    assert set(spec.search_params) == {"efSearch" if kind == "hnsw" else "nprobe"}


def test_low_recall_aborts_and_publishes_nothing(tmp_path):
    opts = IndexOptions(kind="ivf", nlist=40, nprobe=1)
    with pytest.raises(ExportError, match=r"recall@10 below 0.95.*nprobe=1"):
        export_run(trained_run("mf-student"), tmp_path, "lowrecall", opts)
    assert not (tmp_path / "lowrecall").exists(), "a failed first export leaves no bundle folder, version, LATEST or staging folder"


def test_parity_failure_aborts_and_keeps_latest(tmp_path, monkeypatch):
    good = export_run(trained_run("mf-student"), tmp_path, "drift").path
    from training.export import onnx_graph

    real_parity = onnx_graph.check_parity

    def drifting(model, path, **kw):  # the graph holds a table 1e-3 away from torch's
        with torch.no_grad():
            model.user_emb.weight.add_(1e-3)
        try:
            return real_parity(model, path, **kw)
        finally:
            with torch.no_grad():
                model.user_emb.weight.sub_(1e-3)

    monkeypatch.setattr("training.export.bundle_writer.check_parity", drifting)
    with pytest.raises(ExportError, match="ONNX Runtime disagrees with torch by up to"):
        export_run(trained_run("mf-student"), tmp_path, "drift")
    assert read_latest(tmp_path / "drift") == good
    assert sorted(p.name for p in (tmp_path / "drift").iterdir()) == sorted([good.name, LATEST])


def test_a_new_export_is_a_new_version_and_moves_latest(tmp_path):
    first = export_run(trained_run("mf-student"), tmp_path, "b").path
    second = export_run(trained_run("mf-student"), tmp_path, "b").path
    assert first != second and first.is_dir() and read_latest(tmp_path / "b") == second
    assert read_manifest(second).version == second.name


def test_scorer_models_have_no_approximate_index(tmp_path):
    with pytest.raises(ExportError, match="learned scorer"):
        export_run(trained_run("neumf-teacher"), tmp_path, "n", IndexOptions(kind="hnsw"))


def test_cli_export_and_its_errors(tmp_path, capsys):
    assert cli_main(["export", "--run", str(trained_run("mf-student")), "--models-dir", str(tmp_path), "--bundle", "cli", "--role", "teacher"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bundle"] == "cli" and summary["role"] == "teacher" and read_latest(tmp_path / "cli").name == summary["version"]
    assert cli_main(["export", "--run", str(trained_run("mf-student")), "--models-dir", str(tmp_path), "--bundle", "bad/name"]) == 2
    assert "--bundle 'bad/name'" in capsys.readouterr().err
    assert cli_main(["export", "--run", str(tmp_path / "nope"), "--models-dir", str(tmp_path), "--bundle", "x"]) == 2
    assert "no such folder" in capsys.readouterr().err
