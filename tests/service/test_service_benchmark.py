"""``POST /v1/benchmark``: the same users through the same code path for every model; bounded."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from svc_support import models_dir, service_settings


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app_for_test()) as c:
        yield c


def create_app_for_test():
    from service.app import create_app

    return create_app(service_settings(models_dir(), benchmark_max_requests=300))


def test_benchmark_reports_latency_speedup_and_agreement(client):
    r = client.post("/v1/benchmark", json={"models": ["student", "neumf", "ensemble", "student"], "requests": 60, "k": 10, "warmup": 5, "seed": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["requests"], body["k"], body["warmup"], body["seed"], body["reference_model"]) == (60, 10, 5, 3, "student")
    assert 1 <= body["users"] <= 60 and "Recommender.recommend" in body["method"]
    rows = body["results"]
    assert [row["model"] for row in rows] == ["student", "neumf", "ensemble"], "a model listed twice is timed once"
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["mean_ms"] > 0 and row["requests_per_second"] > 0
        assert row["speedup_vs_slowest"] >= 1.0 - 1e-9
        assert 0.0 <= row["overlap_at_k"] <= 1.0
    assert rows[0]["overlap_at_k"] == 1.0, "a model agrees with itself"
    slowest = max(rows, key=lambda row: row["p50_ms"])
    assert slowest["speedup_vs_slowest"] == pytest.approx(1.0)
    assert (rows[0]["role"], rows[1]["family"], rows[2]["role"]) == ("student", "neumf", "ensemble")
    again = client.post("/v1/benchmark", json={"models": ["student", "neumf"], "requests": 60, "k": 10, "warmup": 0, "seed": 3}).json()
    assert again["results"][1]["overlap_at_k"] == pytest.approx(rows[1]["overlap_at_k"]), "same seed, same users, same lists"


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"models": ["student"], "requests": 301}, 422, "DISTILLREC_BENCHMARK_MAX_REQUESTS"),
        ({"models": ["student"], "warmup": 301}, 422, "warmup"),
        ({"models": []}, 422, "models"),
        ({"models": ["student"] * 9}, 422, "models"),
        ({"models": ["student", "ghost"]}, 404, "'ghost'"),
        ({"models": ["student"], "requests": 0}, 422, "requests"),
    ],
)
def test_benchmark_is_bounded(client, payload, status, fragment):
    r = client.post("/v1/benchmark", json=payload)
    assert r.status_code == status and fragment in r.json()["error"]["message"]


def test_one_benchmark_at_a_time(client):
    lock = client.app.state.benchmark_lock
    assert lock.acquire(blocking=False)
    try:
        r = client.post("/v1/benchmark", json={"models": ["student"], "requests": 5})
        assert r.status_code == 429 and r.json()["error"]["code"] == "busy"
    finally:
        lock.release()
    assert client.post("/v1/benchmark", json={"models": ["student"], "requests": 5}).status_code == 200
