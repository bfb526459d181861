"""REST semantics and error rules of the service (in-process, shared bundles of every family)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from svc_support import copy_models, models_dir, service_settings

from service.app import create_app

MODELS = ["student", "neumf", "lightgcn", "ensemble"]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(service_settings(models_dir(), max_k=1000, max_batch=50, max_history=1000))) as c:
        yield c


@pytest.fixture(scope="module")
def data(client):
    rec = client.app.state.registry.models["student"]
    return rec.data


def seen_ids(data, user_id: str) -> set[str]:
    u = data.user_ids.tolist().index(user_id)
    return set(data.item_ids[data.seen_indices[data.seen_indptr[u] : data.seen_indptr[u + 1]]].tolist())


def assert_error(r, status: int, code: str, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    for f in fragments:
        assert f in body["error"]["message"]
    return body


def test_health_ready_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert sorted(b["name"] for b in ready.json()["loaded"]) == sorted(MODELS) and ready.json()["failed"] == []
    listing = client.get("/v1/models").json()
    assert listing["default_model"] == "student"
    by_name = {m["name"]: m for m in listing["models"]}
    assert {n: (m["role"], m["family"]) for n, m in by_name.items()} == {
        "student": ("student", "mf"),
        "neumf": ("teacher", "neumf"),
        "lightgcn": ("teacher", "lightgcn"),
        "ensemble": ("ensemble", "ensemble"),
    }
    one = client.get("/v1/models/student").json()
    assert one["dimension"] == 16 and one["parameters"] == (943 + 1682) * 16 and one["index"]["kind"] == "flat"
    assert one["metrics"]["valid"]["protocol"] == "full" and one["default"] is True and one["version"] == by_name["student"]["version"]
    assert len(by_name["ensemble"]["members"]) == 2
    assert_error(client.get("/v1/models/nope"), 404, "unknown_model", "'nope'", "student")


@pytest.mark.parametrize("model", MODELS)
def test_recommend_excludes_seen_and_returns_k(client, data, model):
    r = client.post("/v1/recommend", json={"user_id": "1", "k": 25, "model": model})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["user_id"], body["fallback_used"]) == (model, "1", False) and body["took_ms"] >= 0
    ids = [it["item_id"] for it in body["items"]]
    assert len(ids) == len(set(ids)) == 25
    assert not set(ids) & seen_ids(data, "1")
    assert set(ids) <= set(data.item_ids.tolist())
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_default_model_and_exclusions(client, data):
    base = client.post("/v1/recommend", json={"user_id": "7", "k": 10}).json()
    assert base["model"] == "student"
    ids = [it["item_id"] for it in base["items"]]
    excluded = client.post("/v1/recommend", json={"user_id": "7", "k": 10, "exclude_items": ids[:3] + ["not-an-item"]}).json()
    new_ids = [it["item_id"] for it in excluded["items"]]
    assert not set(new_ids) & set(ids[:3]) and new_ids[:7] == ids[3:] and len(new_ids) == 10
    with_seen = client.post("/v1/recommend", json={"user_id": "7", "k": 50, "exclude_seen": False}).json()
    assert set(it["item_id"] for it in with_seen["items"]) & seen_ids(data, "7"), "a trained model ranks some training items first"


def test_min_k_eligible(client, data):
    heavy = max(range(len(data.user_ids)), key=lambda u: data.seen_indptr[u + 1] - data.seen_indptr[u])
    user = data.user_ids[heavy]
    n_seen = int(data.seen_indptr[heavy + 1] - data.seen_indptr[heavy])
    eligible = len(data.item_ids) - n_seen
    assert eligible < 1000
    for model in MODELS:
        body = client.post("/v1/recommend", json={"user_id": user, "k": 1000, "model": model}).json()
        assert len(body["items"]) == eligible, model
    unseen = sorted(set(data.item_ids.tolist()) - seen_ids(data, user))
    body = client.post("/v1/recommend", json={"user_id": user, "k": 10, "exclude_items": unseen[:-4]}).json()
    assert sorted(it["item_id"] for it in body["items"]) == unseen[-4:]


def test_unknown_user_404_or_popular_fallback(client, data):
    body = assert_error(client.post("/v1/recommend", json={"user_id": "no-such-user"}), 404, "unknown_user", "'no-such-user'", "student", "fallback")
    assert body["error"]["details"] == {"unknown_user_ids": ["no-such-user"]}
    top = list(data.item_ids[np.lexsort((np.arange(len(data.item_ids)), -data.popularity))[:6]])
    r = client.post("/v1/recommend", json={"user_id": "no-such-user", "k": 5, "fallback": "popular", "exclude_items": [top[0]]}).json()
    assert r["fallback_used"] is True and [it["item_id"] for it in r["items"]] == top[1:6]
    assert r["items"][0]["score"] == float(data.popularity[data.item_ids.tolist().index(top[1])])
    known = client.post("/v1/recommend", json={"user_id": "1", "fallback": "popular"}).json()
    assert known["fallback_used"] is False


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"user_id": "1", "k": 0}, "k"),
        ({"user_id": "1", "k": -3}, "k"),
        ({"user_id": "1", "k": 1001}, "k"),
        ({"user_id": "1", "k": "ten"}, "k"),
        ({"k": 10}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "1", "fallback": "random"}, "fallback"),
        ({"user_id": "1", "surprise": True}, "surprise"),
        ({"user_id": 1}, "user_id"),
    ],
)
def test_invalid_recommend_bodies_are_422(client, payload, fragment):
    body = assert_error(client.post("/v1/recommend", json=payload), 422, "invalid_request", fragment)
    assert body["error"]["details"]


def test_malformed_json_and_limits_are_422(client):
    assert_error(client.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_request")
    assert_error(client.post("/v1/recommend", content=b"", headers={"content-type": "application/json"}), 422, "invalid_request")
    assert_error(client.post("/v1/recommend/batch", json={"user_ids": []}), 422, "invalid_request", "user_ids")
    assert_error(client.post("/v1/recommend/batch", json={"user_ids": ["1"] * 51}), 422, "invalid_request", "51", "DISTILLREC_MAX_BATCH")
    assert_error(client.post("/v1/recommend/history", json={"item_ids": ["1"] * 1001}), 422, "invalid_request", "DISTILLREC_MAX_HISTORY")
    assert_error(client.get("/v1/items/1/similar", params={"k": 0}), 422, "invalid_request", "k")
    assert_error(client.post("/v1/recommend", json={"user_id": "1", "model": "nope"}), 404, "unknown_model", "'nope'")
    assert_error(client.get("/v1/no/such/route"), 404, "not_found")
    assert_error(client.get("/v1/recommend"), 405, "method_not_allowed")


def test_batch(client, data):
    users = ["1", "2", "1", "943"]
    body = client.post("/v1/recommend/batch", json={"user_ids": users, "k": 5, "model": "lightgcn"}).json()
    assert body["model"] == "lightgcn" and [r["user_id"] for r in body["results"]] == users
    single = client.post("/v1/recommend", json={"user_id": "2", "k": 5, "model": "lightgcn"}).json()
    assert body["results"][1]["items"] == single["items"] and body["results"][0] == body["results"][2]
    for r in body["results"]:
        assert not {it["item_id"] for it in r["items"]} & seen_ids(data, r["user_id"])
    body = assert_error(client.post("/v1/recommend/batch", json={"user_ids": ["1", "ghost", "ghost2"]}), 404, "unknown_user", "'ghost'", "'ghost2'")
    mixed = client.post("/v1/recommend/batch", json={"user_ids": ["1", "ghost"], "k": 3, "fallback": "popular"}).json()
    assert [r["fallback_used"] for r in mixed["results"]] == [False, True]


@pytest.mark.parametrize("model", MODELS)
def test_history_for_unknown_users(client, data, model):
    history = list(data.item_ids[:5])
    body = client.post("/v1/recommend/history", json={"item_ids": history, "k": 10, "model": model}).json()
    ids = [it["item_id"] for it in body["items"]]
    assert body["model"] == model and len(ids) == len(set(ids)) == 10 and not set(ids) & set(history)
    again = client.post("/v1/recommend/history", json={"item_ids": history, "k": 10, "model": model, "exclude_items": ids[:2]}).json()
    assert not {it["item_id"] for it in again["items"]} & set(ids[:2])
    assert_error(client.post("/v1/recommend/history", json={"item_ids": ["1", "zz-unknown"], "model": model}), 404, "unknown_item", "'zz-unknown'")
    assert_error(client.post("/v1/recommend/history", json={"item_ids": []}), 422, "invalid_request", "item_ids")


def test_history_fold_in_agrees_with_the_users_own_vector(client, data):
    """The fold-in of a known user's own history recommends much like the model does for that user."""
    overlaps = []
    for u in ["1", "13", "100", "405", "650"]:
        own = {it["item_id"] for it in client.post("/v1/recommend", json={"user_id": u, "k": 20}).json()["items"]}
        hist = sorted(seen_ids(data, u))
        folded = {it["item_id"] for it in client.post("/v1/recommend/history", json={"item_ids": hist[:100], "k": 20}).json()["items"]}
        overlaps.append(len(own & folded) / 20)
    assert np.mean(overlaps) >= 0.3, overlaps


@pytest.mark.parametrize("model", MODELS)
def test_similar_items(client, model):
    body = client.get("/v1/items/50/similar", params={"k": 7, "model": model}).json()
    ids = [it["item_id"] for it in body["items"]]
    assert body["item_id"] == "50" and len(ids) == len(set(ids)) == 7 and "50" not in ids
    assert_error(client.get("/v1/items/no-item/similar", params={"model": model}), 404, "unknown_item", "'no-item'")


def test_prometheus_metrics(client):
    client.post("/v1/recommend", json={"user_id": "3", "model": "neumf"})
    client.post("/v1/recommend", json={"user_id": "no-one", "model": "neumf"})
    text = client.get("/metrics").text
    assert 'distillrec_http_requests_total{method="POST",model="neumf",route="/v1/recommend",status="200"}' in text
    assert 'distillrec_http_requests_total{method="POST",model="neumf",route="/v1/recommend",status="404"}' in text
    assert 'distillrec_http_request_duration_seconds_bucket{le="0.005",method="POST",model="neumf",route="/v1/recommend",status="200"}' in text
    assert 'distillrec_bundle_info{bundle="ensemble"' in text and "distillrec_bundles_failed 0.0" in text
    assert 'route="/v1/no/such/route"' not in text


def test_openapi_advertises_the_configured_limits(client):
    schema = client.get("/openapi.json").json()
    comps = schema["components"]["schemas"]
    assert comps["RecommendRequest"]["properties"]["k"]["maximum"] == 1000
    assert comps["BatchRecommendRequest"]["properties"]["user_ids"]["maxItems"] == 50
    assert schema["paths"]["/v1/recommend"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert "HTTPValidationError" not in comps
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    page = client.get("/docs")
    assert page.status_code == 200 and "/v1/recommend" in page.text and "/openapi.json" in page.text
    assert "http" not in page.text.replace("/openapi.json", ""), "the docs page must work offline: no external assets"


def test_default_model_resolution(tmp_path):
    teachers = copy_models(tmp_path / "t", "neumf", "lightgcn")
    with TestClient(create_app(service_settings(teachers))) as c:
        assert c.get("/v1/models").json()["default_model"] is None
        assert_error(c.post("/v1/recommend", json={"user_id": "1"}), 422, "invalid_request", "no default", "lightgcn, neumf")
        assert c.post("/v1/recommend", json={"user_id": "1", "model": "neumf"}).status_code == 200
    with TestClient(create_app(service_settings(teachers, default_model="lightgcn"))) as c:
        assert c.post("/v1/recommend", json={"user_id": "1"}).json()["model"] == "lightgcn"
    with TestClient(create_app(service_settings(teachers, default_model="missing"))) as c:
        assert_error(c.post("/v1/recommend", json={"user_id": "1"}), 422, "invalid_request", "DISTILLREC_DEFAULT_MODEL='missing'")
    only = copy_models(tmp_path / "o", "neumf")
    with TestClient(create_app(service_settings(only))) as c:
        assert c.post("/v1/recommend", json={"user_id": "1"}).json()["model"] == "neumf"
