"""The serving fast path answers exactly what the ONNX + FAISS path answers, and the directly
dispatched recommend routes behave as FastAPI's routes do.

Factorised bundles keep the user tower's output for every user (computed at load by the graph
itself) and score exact flat indexes in numpy. Here both are switched off on a second copy of the
same recommender (``user_table = None``: the graph runs per request; no flat shortcut: FAISS
searches), and every user's lists are compared: same items in the same order, same scores up to
float32 rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from bundle_factory import TinyData, write_bundle
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from svc_support import service_settings

import service.recommender as recommender_module
from service.app import create_app
from service.bundle.artifacts import MODEL_ONNX, file_entries, read_latest, read_manifest, write_manifest
from service.direct_routes import DirectRoutes
from service.loading import load_recommender

SCORE_TOL = 1e-5  # float32 scores of magnitude ~5 summed in another order


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-path")
    data = TinyData(n_users=300, n_items=1000, dim=24)
    for family in ("mf", "lightgcn"):
        write_bundle(root, family, family=family, data=data)
    return root


def _pair(models, name):
    """(fast, reference): the same bundle loaded twice, the second without the user table and the numpy search."""
    fast = load_recommender(name, read_latest(models / name))
    ref = load_recommender(name, read_latest(models / name))
    ref.user_table = None
    ref._flat.clear()
    return fast, ref


def assert_same(got, want, what):
    """Same items in the same order and the same scores (float32 rounding), except that items whose
    scores tie may come in another order (FAISS orders exact ties by its heap's history)."""
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.user_id == w.user_id and g.fallback_used == w.fallback_used, what
        g_items, w_items = [i for i, _ in g.items], [i for i, _ in w.items]
        g_scores, w_scores = np.array([s for _, s in g.items]), np.array([s for _, s in w.items])
        assert len(g_items) == len(w_items) and np.allclose(g_scores, w_scores, rtol=0, atol=SCORE_TOL), f"{what}: user {g.user_id} gets other scores"
        for pos in np.flatnonzero([a != b for a, b in zip(g_items, w_items)]):
            tied = np.abs(w_scores - g_scores[pos]) <= SCORE_TOL
            assert tied.sum() > 1 or pos == len(w_items) - 1, f"{what}: user {g.user_id} gets item {g_items[pos]} at {pos} without a tie"


@pytest.mark.parametrize("name", ["mf", "lightgcn"])  # ensembles merge these members' lists
def test_every_user_gets_the_onnx_and_faiss_answer(models, name):
    fast, ref = _pair(models, name)
    assert fast.user_table is not None and len(fast._flat) == 2, "the fast path is on (user table; model and cosine indexes flat)"
    users = fast.data.user_ids.tolist()
    some_items = fast.data.item_ids[:50:3].tolist() + ["not-an-item"]
    for k, exclude_seen, exclude in ((10, True, ()), (50, True, some_items), (7, False, ())):
        what = f"{name}, k={k}, exclude_seen={exclude_seen}, {len(exclude)} excluded"
        assert_same(fast.recommend_many(users, k, exclude_seen, exclude), ref.recommend_many(users, k, exclude_seen, exclude), what)
    singles = [fast.recommend(u, 10) for u in users[:40]]
    assert_same(singles, ref.recommend_many(users[:40], 10), f"{name}: single requests")
    heavy = fast.recommend("11", 100)  # 740 of 1,000 items seen: the exclusions dominate
    assert_same([heavy], [ref.recommend("11", 100)], f"{name}: heavy user")
    history = fast.data.item_ids[[1, 9, 17]].tolist()
    assert_same([fast.recommend_for_history(history, 20)], [ref.recommend_for_history(history, 20)], f"{name}: history")
    assert_same([fast.similar_items("5", 15)], [ref.similar_items("5", 15)], f"{name}: similar items")


def test_user_table_holds_the_graph_output_and_respects_its_size_cap(models, monkeypatch):
    fast = load_recommender("mf", read_latest(models / "mf"))
    users = np.arange(fast.n_users, dtype=np.int64)
    assert np.array_equal(fast.user_table, fast.tower(users))
    assert np.array_equal(fast.user_vectors(users[[4, 0, 4]]), fast.tower(users[[4, 0, 4]]))
    monkeypatch.setattr(recommender_module, "USER_TABLE_MAX_BYTES", fast.n_users * fast.manifest.dim * 4 - 1)
    capped = load_recommender("mf", read_latest(models / "mf"))
    assert capped.user_table is None, "over the cap the graph runs per request"
    assert capped.recommend("3", 10) == fast.recommend("3", 10)


def test_a_graph_whose_rows_depend_on_the_batch_keeps_running_per_request(tmp_path):
    """user_vectors = table[users] + 0.001 · Σ users: a user's row changes with the batch, so no table."""
    folder = write_bundle(tmp_path, "mf", data=TinyData(n_users=50, n_items=800, dim=8))
    model = onnx.load(str(folder / MODEL_ONNX))
    graph = model.graph
    graph.node[0].output[0] = "gathered"
    graph.node.extend(
        [
            helper.make_node("Cast", ["users"], ["users_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["users_f"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "scale"], ["shift"]),
            helper.make_node("Add", ["gathered", "shift"], ["user_vectors"]),
        ]
    )
    graph.initializer.append(numpy_helper.from_array(np.array(0.001, dtype=np.float32), "scale"))
    onnx.save(model, str(folder / MODEL_ONNX))
    manifest = read_manifest(folder)
    write_manifest(folder, manifest.model_copy(update={"files": file_entries(folder)}))
    rec = load_recommender("mf", folder)
    assert rec.user_table is None
    one = rec.tower(np.array([7], dtype=np.int64))[0]
    assert np.array_equal(rec.user_vectors(np.array([7], dtype=np.int64))[0], one)


@pytest.mark.parametrize("starlette_helper", [True, False])
def test_recommend_routes_are_dispatched_directly_with_the_usual_errors_and_metrics(models, monkeypatch, starlette_helper):
    """The recommend routes skip FastAPI's route handling, yet answer, fail and are counted as any route;
    without Starlette's (private) exception-handling helper they take the usual route, with the same results."""
    if not starlette_helper:
        monkeypatch.setattr("service.direct_routes.wrap_app_handling_exceptions", None)
    with TestClient(create_app(service_settings(models)), raise_server_exceptions=False) as client:
        stack, layers = client.app.middleware_stack, []
        while stack is not None:
            layers.append(stack)
            stack = getattr(stack, "app", None)
        direct = next(layer for layer in layers if isinstance(layer, DirectRoutes))
        direct_paths = [("/v1/recommend", "POST"), ("/v1/recommend/batch", "POST"), ("/v1/recommend/history", "POST")]
        assert sorted(direct._table) == (direct_paths if starlette_helper else [])
        ok = client.post("/v1/recommend", json={"user_id": "3", "k": 4, "model": "mf"})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 4
        bad = client.post("/v1/recommend", json={"user_id": "3", "k": 0, "model": "mf"})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["body", "k"]
        rec = client.app.state.registry.models["mf"]
        monkeypatch.setattr(rec, "recommend", lambda *a, **kw: 1 / 0)
        broken = client.post("/v1/recommend", json={"user_id": "3", "model": "mf"})
        assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal"
        assert client.get("/v1/recommend").status_code == 405, "other methods still go through FastAPI"
        metrics = client.get("/metrics").text
        for status, model in (("200", "mf"), ("422", ""), ("500", "mf"), ("405", "")):
            labels = f'method="{"GET" if status == "405" else "POST"}",model="{model}",route="/v1/recommend",status="{status}"'
            assert f"distillrec_http_requests_total{{{labels}}} 1.0" in metrics, labels


def test_the_exact_search_reads_faiss_own_vectors_without_a_copy():
    import faiss

    from service.recommender import flat_vectors

    vectors = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    index = faiss.IndexFlatIP(6)
    index.add(vectors)
    view = flat_vectors(index)
    assert np.array_equal(view, vectors) and not view.flags.owndata and not view.flags.writeable
    assert flat_vectors(faiss.IndexFlatL2(6)) is None and flat_vectors(faiss.IndexHNSWFlat(6, 8, faiss.METRIC_INNER_PRODUCT)) is None
