"""Recommendations: for a known user, for a batch of users, from an ad-hoc history, similar items.

Single requests run inline on the event loop: their work is well under a millisecond and a thread
hop would cost more than it. Batches run in the thread pool so that a large one never stalls the loop.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from service.direct_routes import direct
from service.routes.common import (
    INVALID,
    NOT_FOUND,
    NOT_READY,
    Responses,
    capped_default,
    check_limit,
    json_body,
    json_response,
    ms_since,
    parse_body,
    resolve_model,
    scored,
    settings,
)
from service.schemas import (
    BatchRecommendRequest,
    BatchRecommendResponse,
    HistoryRequest,
    ItemListResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarItemsResponse,
)
from service.settings import HARD_MAX_K, MAX_ID_CHARS
from service.shadow import offer_shadow

router = APIRouter(prefix="/v1", tags=["recommend"])
ERRORS: Responses = {**NOT_FOUND, **INVALID, **NOT_READY}


def _k_checked(body, s) -> int:
    """The request's k (defaulted, capped) after checking k and exclude_items against the settings."""
    k = capped_default(body, "k", s.max_k)
    check_limit("k", k, s.max_k, "DISTILLREC_MAX_K")
    check_limit("the number of exclude_items", len(body.exclude_items), s.max_history, "DISTILLREC_MAX_HISTORY", "exclude_items")
    return k


@router.post(
    "/recommend", response_model=RecommendResponse, responses=ERRORS, openapi_extra=json_body(RecommendRequest), summary="top-k items for a known user"
)
@direct
async def recommend(request: Request) -> Response:
    t0 = time.perf_counter()
    body = await parse_body(request, RecommendRequest)
    s = settings(request)
    k = _k_checked(body, s)
    rec = resolve_model(request, body.model)
    out = rec.recommend(body.user_id, k, body.exclude_seen, body.exclude_items, body.fallback)
    response = json_response(
        {"model": rec.name, "version": rec.version, "user_id": body.user_id, "items": scored(out), "fallback_used": out.fallback_used, "took_ms": ms_since(t0)}
    )
    offer_shadow(request, response, body, k, out)
    return response


@router.post(
    "/recommend/batch",
    response_model=BatchRecommendResponse,
    responses=ERRORS,
    openapi_extra=json_body(BatchRecommendRequest),
    summary="top-k items for many known users in one call",
)
@direct
async def recommend_batch(request: Request) -> Response:
    t0 = time.perf_counter()
    body = await parse_body(request, BatchRecommendRequest)
    s = settings(request)
    k = _k_checked(body, s)
    check_limit("the number of user_ids", len(body.user_ids), s.max_batch, "DISTILLREC_MAX_BATCH", "user_ids")
    rec = resolve_model(request, body.model)
    outs = await run_in_threadpool(rec.recommend_many, body.user_ids, k, body.exclude_seen, body.exclude_items, body.fallback)
    results = [{"user_id": o.user_id, "items": scored(o), "fallback_used": o.fallback_used} for o in outs]
    return json_response({"model": rec.name, "version": rec.version, "results": results, "took_ms": ms_since(t0)})


@router.post(
    "/recommend/history",
    response_model=ItemListResponse,
    responses=ERRORS,
    openapi_extra=json_body(HistoryRequest),
    summary="top-k items for a user the model has never seen, from their item ids",
)
@direct
async def recommend_history(request: Request) -> Response:
    t0 = time.perf_counter()
    body = await parse_body(request, HistoryRequest)
    s = settings(request)
    k = _k_checked(body, s)
    check_limit("the number of item_ids", len(body.item_ids), s.max_history, "DISTILLREC_MAX_HISTORY", "item_ids")
    rec = resolve_model(request, body.model)
    out = rec.recommend_for_history(body.item_ids, k, body.exclude_items)
    return json_response({"model": rec.name, "version": rec.version, "items": scored(out), "took_ms": ms_since(t0)})


@router.get(
    "/items/{item_id}/similar", response_model=SimilarItemsResponse, responses=ERRORS, summary="the k items most similar to an item (cosine of item vectors)"
)
async def similar_items(
    request: Request,
    item_id: str = Path(max_length=MAX_ID_CHARS, description="external item id"),
    k: int = Query(10, ge=1, le=HARD_MAX_K, description="number of items (at most DISTILLREC_MAX_K)"),
    model: str | None = Query(None, max_length=64, description="bundle name (default model if omitted)"),
) -> Response:
    t0 = time.perf_counter()
    max_k = settings(request).max_k
    k = k if "k" in request.query_params else min(k, max_k)
    check_limit("k", k, max_k, "DISTILLREC_MAX_K")
    rec = resolve_model(request, model)
    out = rec.similar_items(item_id, k)
    return json_response({"model": rec.name, "version": rec.version, "item_id": item_id, "items": scored(out), "took_ms": ms_since(t0)})
