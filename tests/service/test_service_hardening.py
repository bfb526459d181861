"""One request or one file must not take the service down, leak through it, or pin it.

The fast cases of ``distillrec.benchmarks.reliability`` (which also runs the slow ones, over HTTP:
memory of concurrent scorer batches, client disconnects, a soak).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import numpy_helper
from svc_support import copy_models, service_settings

from service import recommender as recommender_module
from service.app import create_app
from service.bundle.artifacts import (
    BundleError,
    file_entries,
    read_latest,
    read_manifest,
    write_manifest,
)
from service.failures import PUBLIC_REASON_CHARS, public_reason
from service.latency_benchmark import BenchmarkStopped, run_benchmark
from service.loading import load_recommender
from service.provenance import teacher_info
from service.request_guard import CLIENT_CLOSED

TOKEN = "hardening-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _app(models, **overrides):
    return create_app(service_settings(models, admin_token=TOKEN, **overrides))


def _public_text(c: TestClient) -> str:
    return c.get("/readyz").text + c.get("/v1/models").text


# ----------------------------------------------------------------------------- LATEST and symlinks
def _not_utf8(bundle_dir, tmp_path):
    (bundle_dir / "LATEST").write_bytes(b"\xff\xfe\x00bad")


def _fifo(bundle_dir, tmp_path):
    (bundle_dir / "LATEST").unlink()
    os.mkfifo(bundle_dir / "LATEST")


def _environ(bundle_dir, tmp_path):
    (bundle_dir / "LATEST").unlink()
    (bundle_dir / "LATEST").symlink_to("/proc/self/environ")


def _huge(bundle_dir, tmp_path):
    (bundle_dir / "LATEST").write_bytes(b"A" * (20 << 20))


def _version_outside(bundle_dir, tmp_path):
    version = read_latest(bundle_dir)
    outside = tmp_path / "elsewhere"
    version.rename(outside)
    version.symlink_to(outside, target_is_directory=True)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (_not_utf8, "not UTF-8"),
        (_fifo, "not a regular file"),
        (_environ, "leaves the models dir"),
        (_huge, "bytes, a version name"),
        (_version_outside, "leaves the models dir"),
    ],
)
def test_a_bad_latest_is_contained_to_its_bundle_and_never_leaks(tmp_path, monkeypatch, damage, fragment):
    monkeypatch.setenv("DISTILLREC_HARDENING_SECRET", "do-not-leak-me")
    models = copy_models(tmp_path / "models", "student", "neumf")
    damage(models / "neumf", tmp_path)
    with TestClient(_app(models)) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200 and [b["name"] for b in ready.json()["loaded"]] == ["student"]
        (failure,) = ready.json()["failed"]
        assert failure["bundle"] == "neumf" and fragment in failure["reason"] and len(failure["reason"]) <= PUBLIC_REASON_CHARS
        public = _public_text(c)
        assert "do-not-leak-me" not in public and TOKEN not in public and str(tmp_path) not in public
        assert len(ready.content) < 4096, "a huge LATEST never makes /readyz huge"
        r = c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 200, "the same failure again is reported, not a 409 and never a 500"
        assert [f["bundle"] for f in r.json()["still_failed"]] == ["neumf"] and r.json()["failed"] == []


def test_a_bundle_symlinked_from_outside_is_refused(tmp_path):
    models = copy_models(tmp_path / "models", "student")
    outside = copy_models(tmp_path / "outside", "neumf")
    (models / "neumf").symlink_to(outside / "neumf", target_is_directory=True)
    with TestClient(_app(models)) as c:
        (failure,) = c.get("/readyz").json()["failed"]
        assert failure["bundle"] == "neumf" and "leaves the models dir" in failure["reason"]


def test_reload_reports_per_bundle(tmp_path):
    from svc_support import trained_run

    from training.export import export_run

    models = copy_models(tmp_path / "models", "student", "neumf")
    _not_utf8(models / "neumf", tmp_path)
    with TestClient(_app(models)) as c:
        old = c.get("/v1/models/student").json()["version"]
        new = export_run(trained_run("mf-student"), models, "student").path.name
        r = c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 200, "an old failure of another bundle does not turn a good switch into a 409"
        assert r.json()["changed"] == [{"bundle": "student", "previous_version": old, "version": new}]
        (models / "student" / "LATEST").write_bytes(b"\x80")
        r = c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 409 and [f["bundle"] for f in r.json()["error"]["details"]["failed"]] == ["student"]
        assert c.post("/v1/recommend", json={"user_id": "1", "model": "student"}).json()["version"] == new, "keeps serving"


def test_public_reasons_hide_server_paths(tmp_path):
    reason = public_reason(f"{tmp_path}/m/b/v/model.onnx: bad (see /usr/lib/x.so)", tmp_path / "m")
    assert reason == "b/v/model.onnx: bad (see <path>)"
    assert len(public_reason("x" * 10_000, tmp_path)) == PUBLIC_REASON_CHARS


@pytest.mark.parametrize("state", ["missing", "empty", "only an export in progress"])
def test_not_ready_says_why(tmp_path, state):
    models = tmp_path / "models"
    if state != "missing":
        models.mkdir()
    if state == "only an export in progress":
        (models / "b" / ".tmp-x").mkdir(parents=True)
    with TestClient(_app(models)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["failed"] == [] and "DISTILLREC_MODELS_DIR" in r.json()["reason"]
        assert str(tmp_path) not in r.text
        assert "DISTILLREC_MODELS_DIR" in c.post("/v1/recommend", json={"user_id": "1"}).json()["error"]["message"]


# ------------------------------------------------------------------------------ swapped ONNX graph
def _truncate_tables(folder, axis: int, size: int) -> None:
    """Cuts every initializer of the graph that is a user table (axis 0) or its width (axis 1), then
    recomputes the checksums, as an operator swapping files by hand would."""
    path = folder / "model.onnx"
    model = onnx.load(str(path))
    n_users = read_manifest(folder).data.n_users
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim == 2 and arr.shape[0] == n_users:
            cut = arr[:size] if axis == 0 else arr[:, :size]
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(cut), init.name))
    onnx.save(model, str(path))
    manifest = read_manifest(folder)
    write_manifest(folder, manifest.model_copy(update={"files": file_entries(folder)}))


@pytest.mark.parametrize(
    ("bundle", "axis", "fragment"),
    [("neumf", 0, "fails on the last user/item index"), ("student", 0, "fails on the last user/item index"), ("student", 1, "answers shape")],
)
def test_a_swapped_graph_is_refused_at_load_naming_the_file(tmp_path, bundle, axis, fragment):
    models = copy_models(tmp_path / "models", bundle)
    folder = read_latest(models / bundle)
    _truncate_tables(folder, axis, 5)
    with pytest.raises(BundleError, match=fragment) as err:
        load_recommender(bundle, folder)
    assert "model.onnx" in str(err.value) and "Re-export" in str(err.value)


# --------------------------------------------------------------------------------- scorer memory
def test_scorer_batches_are_chunked_and_capped(tmp_path, monkeypatch):
    models = copy_models(tmp_path / "models", "neumf")
    rec = load_recommender("neumf", read_latest(models / "neumf"))
    users = np.arange(min(rec.n_users, 40), dtype=np.int64)
    whole = np.stack([rec.scores(users[i : i + 1])[0] for i in range(len(users))])
    calls, slots = [], []
    run = rec.session.run

    def counting(output, feeds):
        calls.append(len(feeds[rec._inputs[0]]))
        return run(output, feeds)

    class Slot:
        def __enter__(self):
            slots.append(1)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(recommender_module, "SCORER_BUDGET", 7 * rec.n_items * rec.manifest.dim)
    monkeypatch.setattr(recommender_module, "scoring_slot", Slot)
    rec.session = type("CountingSession", (), {"run": staticmethod(counting)})()
    chunked = rec.scores(users)
    assert np.allclose(chunked, whole, atol=1e-5), "chunking does not change the scores"
    assert max(calls) == 7 and sum(calls) == len(users) and len(slots) == len(calls), "every chunk bounded, every chunk in a slot"


# ------------------------------------------------------------------------------- request limits
@pytest.fixture(scope="module")
def client():
    models = copy_models(__import__("svc_support").ROOT / "hardening-models", "student", "neumf")
    with TestClient(_app(models, max_body_bytes=4096, benchmark_max_seconds=0.2)) as c:
        yield c


def test_body_size_and_type_are_limited(client):
    big = json.dumps({"user_id": "1", "exclude_items": ["x"] * 2000})
    r = client.post("/v1/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["details"] == {"limit_bytes": 4096}
    for headers in ({"content-type": "text/plain"}, {}, {"content-type": "application/x-www-form-urlencoded"}):
        r = client.post("/v1/benchmark", content=json.dumps({"models": ["student"]}), headers=headers)
        assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    ok = client.post("/v1/recommend", content=json.dumps({"user_id": "1"}), headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_ids_are_bounded_and_echoes_are_short(client):
    for path, body in (
        ("/v1/recommend/batch", {"user_ids": ["u" * 257]}),
        ("/v1/recommend/history", {"item_ids": ["i" * 257]}),
        ("/v1/recommend", {"user_id": "1", "exclude_items": ["i" * 257]}),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 422 and "u" * 257 not in r.text and "i" * 257 not in r.text
    r = client.get("/v1/items/" + "i" * 300 + "/similar")
    assert r.status_code == 422 and len(r.content) < 2048
    r = client.get("/nowhere/" + "x" * 5000)
    assert r.status_code == 404 and len(r.content) < 1024


def test_limit_errors_have_details(client):
    r = client.post("/v1/recommend", json={"user_id": "1", "k": 101})
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {"field": "k", "value": 101, "limit": 100, "setting": "DISTILLREC_MAX_K"}
    r = client.post("/v1/recommend/batch", json={"user_ids": ["1"] * 257})
    assert r.json()["error"]["details"]["field"] == "user_ids"


def test_head_healthz(client):
    r = client.head("/healthz")
    assert r.status_code == 200 and r.content == b""


def test_benchmark_is_deduplicated_time_limited_and_labels_are_bounded(client):
    r = client.post("/v1/benchmark", json={"models": ["neumf"] * 8, "requests": 5000, "warmup": 0})
    assert r.status_code == 503 and r.json()["error"]["code"] == "benchmark_stopped" and "DISTILLREC_BENCHMARK_MAX_SECONDS" in r.json()["error"]["message"]
    assert client.app.state.benchmark_lock.acquire(blocking=False), "the lock is free again"
    client.app.state.benchmark_lock.release()
    lists = [["student", "neumf"], ["neumf", "student"], ["student", "neumf", "student"], ["neumf", "neumf", "student"]]
    for models in lists:
        assert client.post("/v1/benchmark", json={"models": models, "requests": 3, "warmup": 0}).status_code == 200
    client.request("FOOBAR", "/healthz")
    series = [line for line in client.get("/metrics").text.splitlines() if line.startswith("distillrec_http_requests_total{") and "/v1/benchmark" in line]
    assert {line.split('model="')[1].split('"')[0] for line in series} <= {"student", "neumf", "<several>", ""}
    assert 'method="FOOBAR"' not in client.get("/metrics").text


def test_run_benchmark_stops_when_asked(client):
    rec = client.app.state.registry.models["student"]
    asked = []

    def stop():
        asked.append(1)
        return "the client disconnected" if len(asked) > 3 else None

    with pytest.raises(BenchmarkStopped, match="client disconnected"):
        run_benchmark([rec], 1000, 10, 0, stop=stop)
    assert len(asked) == 4


def test_a_client_gone_mid_body_is_neither_logged_as_an_error_nor_a_500(client, caplog):
    app = client.app
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/recommend",
        "raw_path": b"/v1/recommend",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "app": app,
    }
    with caplog.at_level(logging.ERROR, logger="distillrec.service"):
        asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == CLIENT_CLOSED and not caplog.records
    assert 'status="500"' not in client.get("/metrics").text


def test_teacher_reference_is_an_object_without_paths():
    ref = json.dumps({"path": "/home/me/runs/t1", "name": "t1", "best_epoch": 3, "data_fingerprint": "abc"})
    assert teacher_info(ref) == {"name": "t1", "best_epoch": 3, "data_fingerprint": "abc"}
    assert teacher_info("/home/me/runs/t1") == {"name": "t1"} and teacher_info(None) is None


def test_large_freed_buffers_go_back_to_the_system():
    import ctypes.util

    from service.memory import return_large_buffers

    glibc = hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "gnu_get_libc_version")
    assert return_large_buffers() is glibc
