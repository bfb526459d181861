"""End-to-end parity: for every MovieLens-100K user, the service's top-10 (exact index, seen items
excluded) equals the torch model's top-10 — through HTTP, for every model family and the ensemble."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from svc_support import ensemble_run, service_settings, trained_models_dir, trained_run

from service.app import create_app
from service.bundle.aggregation import aggregate_lists
from training.evaluation import TorchScorer, top_k_excluding
from training.export.bundle_writer import all_interactions
from training.runs import load_run

K = 10
TIE = 1e-5  # positions whose torch scores differ by less than this may swap (float summation order)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(service_settings(trained_models_dir()))) as c:
        yield c


def service_top_k(client, model: str, user_ids: list[str], k: int = K) -> list[list[str]]:
    out = []
    for s in range(0, len(user_ids), 256):
        r = client.post("/v1/recommend/batch", json={"user_ids": user_ids[s : s + 256], "k": k, "model": model})
        assert r.status_code == 200, r.text
        out += [[it["item_id"] for it in res["items"]] for res in r.json()["results"]]
    return out


def assert_same_lists(service: list[list[str]], reference: np.ndarray, scores: np.ndarray, dataset, what: str) -> None:
    """Lists must be equal; a difference is accepted only between items whose reference scores tie."""
    index = {it: i for i, it in enumerate(dataset.item_ids.tolist())}
    mismatches = []
    for u, (got_ids, want) in enumerate(zip(service, reference)):
        got = np.array([index[i] for i in got_ids])
        assert not np.isin(got, all_interactions(dataset)[u].indices).any(), f"{what}: a seen item was returned for user {u}"
        same = len(got) == len(want) and (np.array_equal(got, want) or np.allclose(scores[u, got], scores[u, want], atol=TIE))
        if not same:
            mismatches.append(u)
    assert not mismatches, f"{what}: top-{K} differs from torch for {len(mismatches)} users, e.g. {mismatches[:5]}"


@pytest.mark.parametrize(("bundle", "kind"), [("student", "mf-student"), ("neumf", "neumf-teacher"), ("lightgcn", "lightgcn-teacher")])
def test_every_user_top10_equals_torch(client, bundle, kind):
    run = load_run(trained_run(kind))
    users = np.arange(run.dataset.n_users)
    scorer = TorchScorer(run.model)
    reference = top_k_excluding(scorer, users, all_interactions(run.dataset), K)  # bundles exclude every known interaction
    scores = scorer.score_all(users)
    got = service_top_k(client, bundle, run.dataset.user_ids.tolist())
    assert len(got) == run.dataset.n_users and all(len(g) == K for g in got)
    assert_same_lists(got, reference, scores, run.dataset, bundle)


def test_every_user_ensemble_top10_equals_rank_aggregation_of_torch_members(client):
    import json

    spec = json.loads((ensemble_run() / "ensemble.json").read_text())
    runs = [load_run(trained_run("mf-student")), load_run(trained_run("neumf-teacher"))]
    dataset = runs[0].dataset
    users = np.arange(dataset.n_users)
    lists = [top_k_excluding(TorchScorer(r.model), users, all_interactions(dataset), spec["list_length"]) for r in runs]
    reference, agg = aggregate_lists(lists, K, [m["weight"] for m in spec["members"]], spec["temperature"])
    # aggregated importance as a dense score matrix, for the tie tolerance
    scores = np.full((dataset.n_users, dataset.n_items), -1.0)
    np.put_along_axis(scores, reference, agg, axis=1)
    got = service_top_k(client, "ensemble", dataset.user_ids.tolist())
    assert_same_lists(got, reference, scores, dataset, "ensemble")
