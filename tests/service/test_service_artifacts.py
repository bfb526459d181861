"""The artifact contract (``service.bundle.artifacts``): id/seen/array files, manifest validation, LATEST."""

from __future__ import annotations

import json

import numpy as np
import pytest
from svc_support import exported

from service.bundle.artifacts import (
    BundleError,
    Manifest,
    new_version,
    read_array,
    read_ids,
    read_latest,
    read_manifest,
    read_seen,
    verify_files,
    write_ids,
    write_latest,
    write_seen,
)


def test_ids_round_trip_without_pickle(tmp_path):
    ids = ["1", "ünïcode-ß", "a b", "x" * 40]
    write_ids(tmp_path / "ids.npy", ids)
    assert read_ids(tmp_path / "ids.npy").tolist() == ids
    np.save(tmp_path / "obj.npy", np.array(["a", None], dtype=object), allow_pickle=True)
    with pytest.raises(BundleError, match="obj.npy: cannot read"):
        read_ids(tmp_path / "obj.npy")
    write_ids(tmp_path / "dup.npy", ["a", "a"])
    with pytest.raises(BundleError, match="dup.npy: ids are not unique"):
        read_ids(tmp_path / "dup.npy")


def test_seen_round_trip_and_checks(tmp_path):
    write_seen(tmp_path / "seen.npz", np.array([0, 2, 2, 3]), np.array([4, 1, 0]))
    indptr, indices = read_seen(tmp_path / "seen.npz", 3, 5)
    assert indptr.tolist() == [0, 2, 2, 3] and indices.tolist() == [4, 1, 0]
    with pytest.raises(BundleError, match="seen.npz: 'indptr' does not describe 4 users"):
        read_seen(tmp_path / "seen.npz", 4, 5)
    with pytest.raises(BundleError, match=r"outside \[0, 3\)"):
        read_seen(tmp_path / "seen.npz", 3, 3)
    np.save(tmp_path / "v.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(BundleError, match=r"v.npy: expected dtype kind 'f' and shape \(3, 4\)"):
        read_array(tmp_path / "v.npy", "f", (3, 4))


def test_latest_pointer(tmp_path):
    with pytest.raises(BundleError, match="LATEST: missing"):
        read_latest(tmp_path)
    version = new_version()
    (tmp_path / version).mkdir()
    write_latest(tmp_path, version)
    assert read_latest(tmp_path) == tmp_path / version
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["LATEST", version]), "no temporary file left"
    (tmp_path / "LATEST").write_text("../../etc\n")
    with pytest.raises(BundleError, match="does not hold a version name"):
        read_latest(tmp_path)
    with pytest.raises(ValueError):
        write_latest(tmp_path, "../escape")


def test_manifest_validation_names_the_field(tmp_path):
    good = json.loads((exported("student") / "manifest.json").read_text())
    cases = [
        ({**good, "role": "ensemble"}, "rank_aggregation"),
        ({**good, "index": None}, "index"),
        ({**good, "files": [f for f in good["files"] if f["path"] != "seen.npz"]}, "seen.npz"),
        ({**good, "schema_version": 99}, "schema_version 99"),
        ({**good, "surprise": 1}, "surprise"),
        ({**good, "bundle": "../x"}, "bundle"),
    ]
    for raw, fragment in cases:
        (tmp_path / "manifest.json").write_text(json.dumps(raw))
        with pytest.raises(BundleError, match="manifest.json") as exc:
            read_manifest(tmp_path)
        assert fragment in str(exc.value)
    assert Manifest.model_validate(good).bundle == "student"


def test_file_entries_cannot_escape_the_bundle(tmp_path):
    good = json.loads((exported("student") / "manifest.json").read_text())
    good["files"].append({"path": "../../outside", "bytes": 0, "sha256": "0" * 64})
    manifest = Manifest.model_validate(good)
    with pytest.raises(BundleError, match="points outside the bundle"):
        verify_files(exported("student"), manifest)
