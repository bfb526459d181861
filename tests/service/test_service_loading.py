"""Bad bundles are refused at load (log line naming the file) while good ones serve; admin reload."""

from __future__ import annotations

import json
import logging

import pytest
from bundle_factory import write_bundle
from fastapi.testclient import TestClient
from svc_support import copy_models, service_settings

from service.app import create_app
from service.bundle.artifacts import read_latest

TOKEN = "s3cret-token"


def corrupt_manifest(folder):
    (folder / "manifest.json").write_text("{ this is not json")


def corrupt_schema(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["role"] = "oracle"
    (folder / "manifest.json").write_text(json.dumps(manifest))


def delete_file(folder):
    (folder / "item_vectors.npy").unlink()


def flip_byte(folder):
    path = folder / "popularity.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def dangling_latest(folder):
    (folder.parent / "LATEST").write_text("20000101T000000Z-000000\n")


@pytest.mark.parametrize(
    ("damage", "names"),
    [
        (corrupt_manifest, ["manifest.json", "not valid JSON"]),
        (corrupt_schema, ["manifest.json", "role"]),
        (delete_file, ["item_vectors.npy", "missing"]),
        (flip_byte, ["popularity.npy", "sha256"]),
        (dangling_latest, ["LATEST", "20000101T000000Z-000000"]),
    ],
)
def test_bad_bundle_is_refused_and_the_good_one_serves(tmp_path, caplog, damage, names):
    models = copy_models(tmp_path / "models", "student", "neumf")
    damage(read_latest(models / "neumf"))
    with caplog.at_level(logging.ERROR, logger="distillrec.service"), TestClient(create_app(service_settings(models))) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert [b["name"] for b in body["loaded"]] == ["student"]
        [failure] = body["failed"]
        assert failure["bundle"] == "neumf" and all(n in failure["reason"] for n in names), failure
        assert c.post("/v1/recommend", json={"user_id": "1"}).status_code == 200
        r = c.post("/v1/recommend", json={"user_id": "1", "model": "neumf"})
        assert r.status_code == 404 and "failed to load" in r.json()["error"]["message"] and names[0] in r.json()["error"]["message"]
        assert "distillrec_bundles_failed 1.0" in c.get("/metrics").text
    logged = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert any("refused bundle neumf" in m and names[0] in m for m in logged), logged


def test_no_bundle_means_not_ready(tmp_path):
    with TestClient(create_app(service_settings(tmp_path / "empty"))) as c:
        r = c.get("/readyz")
        body = r.json()
        assert r.status_code == 503 and {k: body[k] for k in ("ready", "loaded", "failed", "default_model")} == {
            "ready": False,
            "loaded": [],
            "failed": [],
            "default_model": None,
        }
        assert "does not exist" in body["reason"] and str(tmp_path) not in body["reason"]
        assert c.get("/healthz").status_code == 200
        r = c.post("/v1/recommend", json={"user_id": "1"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_admin_reload_requires_the_token(tmp_path):
    models = copy_models(tmp_path / "models", "student")
    with TestClient(create_app(service_settings(models))) as c:
        r = c.post("/v1/admin/reload")
        assert r.status_code == 403 and "DISTILLREC_ADMIN_TOKEN" in r.json()["error"]["message"]
    with TestClient(create_app(service_settings(models, admin_token=TOKEN))) as c:
        r = c.post("/v1/admin/reload")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/admin/reload", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        ok = c.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["unchanged"] == ["student"] and ok.json()["changed"] == []


def test_reload_swaps_new_versions_and_keeps_old_ones_on_failure(tmp_path):
    models = copy_models(tmp_path / "models", "student", "neumf")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(service_settings(models, admin_token=TOKEN))) as c:
        old = {b["name"]: b["version"] for b in c.get("/readyz").json()["loaded"]}
        # a good new version of the student and a new bundle
        new_student = write_bundle(models, "student")
        write_bundle(models, "lightgcn", "lightgcn", "teacher")
        r = c.post("/v1/admin/reload", headers=auth)
        assert r.status_code == 200, r.text
        report = r.json()
        assert {ch["bundle"]: (ch["previous_version"], ch["version"]) for ch in report["changed"]} == {
            "student": (old["student"], new_student.name),
            "lightgcn": (None, read_latest(models / "lightgcn").name),
        }
        assert report["unchanged"] == ["neumf"] and report["failed"] == []
        assert c.post("/v1/recommend", json={"user_id": "1"}).json()["version"] == new_student.name
        assert c.post("/v1/recommend", json={"user_id": "1", "model": "lightgcn"}).status_code == 200

        # a broken new version of neumf: refused, the old version keeps serving, the reason is reported
        broken = write_bundle(models, "neumf", "neumf", "teacher")
        flip_byte(broken)
        r = c.post("/v1/admin/reload", headers=auth)
        assert r.status_code == 409
        err = r.json()["error"]
        assert err["code"] == "reload_failed" and "neumf" in err["message"] and "popularity.npy" in err["message"]
        [failure] = err["details"]["failed"]
        assert (failure["bundle"], failure["version"], failure["serving_version"]) == ("neumf", broken.name, old["neumf"])
        served = c.post("/v1/recommend", json={"user_id": "1", "model": "neumf"}).json()
        assert served["version"] == old["neumf"]
        ready = c.get("/readyz").json()
        assert ready["failed"][0]["serving_version"] == old["neumf"] and "neumf" in [b["name"] for b in ready["loaded"]]
        assert 'distillrec_reloads_total{outcome="failed"} 1.0' in c.get("/metrics").text
