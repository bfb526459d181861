"""Wire schemas of the REST API (pydantic). Ids are the dataset's external ids, always strings.

Field limits here are hard ceilings; the configured limits (``DISTILLREC_MAX_K`` …) are enforced per
request and written into the served OpenAPI schema by ``service.app``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from service.settings import HARD_MAX_BATCH, HARD_MAX_BENCHMARK_REQUESTS, HARD_MAX_HISTORY, HARD_MAX_K, MAX_ID_CHARS

#: one external id in a request (bounded: ids are echoed in error messages)
Id = Annotated[str, Field(max_length=MAX_ID_CHARS)]
#: one bundle name in a request
ModelName = Annotated[str, Field(max_length=64)]


def _integral(value: Any) -> Any:
    """JSON Schema counts 10.0 as an integer; strict pydantic does not. Accept integral floats only."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: an integer field of a strict request model that accepts 10 and 10.0 (JSON's integers) but not "10"
JsonInt = Annotated[int, BeforeValidator(_integral)]


class _Request(BaseModel):
    """Request bodies: unknown fields and type coercion ("10" for 10, 0 for false) are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(
        description="the model's score: inner product (MF, LightGCN), logit (NeuMF), summed rank importance (ensemble), or interaction count (popularity fallback)"
    )


# ----------------------------------------------------------------------------------- recommend
class RecommendRequest(_Request):
    user_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="external user id", examples=["196"])
    k: JsonInt = Field(10, ge=1, le=HARD_MAX_K, description="number of items (at most DISTILLREC_MAX_K)")
    model: str | None = Field(None, max_length=64, description="bundle name; default: DISTILLREC_DEFAULT_MODEL, else the best student, else the only bundle")
    exclude_seen: bool = Field(True, description="leave out the user's training items")
    exclude_items: list[Id] = Field(
        default_factory=list, max_length=HARD_MAX_HISTORY, description="item ids never to return (ids unknown to the model are ignored)"
    )
    fallback: Literal["none", "popular"] = Field(
        "none", description="'popular': an unknown user gets the most popular items (fallback_used=true) instead of a 404"
    )


class RecommendResponse(BaseModel):
    model: str
    version: str
    user_id: str
    items: list[ScoredItem]
    fallback_used: bool
    took_ms: float


class BatchRecommendRequest(_Request):
    user_ids: list[Id] = Field(min_length=1, max_length=HARD_MAX_BATCH, description="external user ids (at most DISTILLREC_MAX_BATCH)")
    k: JsonInt = Field(10, ge=1, le=HARD_MAX_K)
    model: str | None = Field(None, max_length=64)
    exclude_seen: bool = True
    exclude_items: list[Id] = Field(default_factory=list, max_length=HARD_MAX_HISTORY, description="applies to every user")
    fallback: Literal["none", "popular"] = "none"


class UserRecommendations(BaseModel):
    user_id: str
    items: list[ScoredItem]
    fallback_used: bool


class BatchRecommendResponse(BaseModel):
    model: str
    version: str
    results: list[UserRecommendations]
    took_ms: float


class HistoryRequest(_Request):
    item_ids: list[Id] = Field(min_length=1, max_length=HARD_MAX_HISTORY, description="items the (unknown) user interacted with; they are not recommended back")
    k: JsonInt = Field(10, ge=1, le=HARD_MAX_K)
    model: str | None = Field(None, max_length=64)
    exclude_items: list[Id] = Field(default_factory=list, max_length=HARD_MAX_HISTORY)


class ItemListResponse(BaseModel):
    model: str
    version: str
    items: list[ScoredItem]
    took_ms: float


class SimilarItemsResponse(ItemListResponse):
    item_id: str


# -------------------------------------------------------------------------------------- models
class BundleFailure(BaseModel):
    bundle: str
    version: str | None
    reason: str
    serving_version: str | None = Field(None, description="the version still served, if an older one is loaded")


class ModelInfo(BaseModel):
    name: str
    version: str
    role: Literal["teacher", "student", "ensemble"]
    family: str
    dimension: int | None
    parameters: int
    score_function: str
    users: int
    items: int
    index: dict[str, Any] | None
    onnx: dict[str, Any] | None
    ensemble: dict[str, Any] | None
    members: list[dict[str, Any]] | None = None
    metrics: dict[str, Any] = Field(description="offline metrics: {'valid': {...}, 'test': {...}}, each with its protocol")
    select: str | None
    data: dict[str, Any]
    teacher: dict[str, Any] | None = Field(description="students: the teacher run they were distilled from (name, model, metrics, data fingerprint; no paths)")
    kd: list[dict[str, Any]]
    created_at: str
    default: bool


class ModelsResponse(BaseModel):
    default_model: str | None
    models: list[ModelInfo]
    failed: list[BundleFailure]


# ------------------------------------------------------------------------------------- health
class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class LoadedBundle(BaseModel):
    name: str
    version: str
    role: str
    family: str


class ReadyResponse(BaseModel):
    ready: bool
    loaded: list[LoadedBundle]
    failed: list[BundleFailure]
    default_model: str | None
    reason: str | None = Field(None, description="when not ready: why (models dir missing or empty, every bundle failed)")


# ---------------------------------------------------------------------------------- benchmark
class BenchmarkRequest(_Request):
    models: list[ModelName] = Field(min_length=1, max_length=8, description="bundle names; overlap@k is measured against the first")
    requests: JsonInt = Field(
        200, ge=1, le=HARD_MAX_BENCHMARK_REQUESTS, description="timed recommendations per model (at most DISTILLREC_BENCHMARK_MAX_REQUESTS)"
    )
    k: JsonInt = Field(10, ge=1, le=HARD_MAX_K)
    warmup: JsonInt = Field(20, ge=0, le=HARD_MAX_BENCHMARK_REQUESTS, description="untimed recommendations per model first (same cap)")
    seed: JsonInt = Field(0, ge=0, le=2**31 - 1, description="seed of the sampled users")


class BenchmarkModelResult(BaseModel):
    model: str
    version: str
    role: str
    family: str
    parameters: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_second: float
    speedup_vs_slowest: float = Field(description="p50 of the slowest model / p50 of this one")
    overlap_at_k: float = Field(description="mean |top-k ∩ top-k of the first model| / k over the sampled users")


class BenchmarkResponse(BaseModel):
    requests: int
    warmup: int
    k: int
    seed: int
    users: int = Field(description="distinct users among the sampled ones")
    reference_model: str
    results: list[BenchmarkModelResult]
    method: str


# -------------------------------------------------------------------------------------- admin
class BundleChange(BaseModel):
    bundle: str
    previous_version: str | None
    version: str


class ReloadResponse(BaseModel):
    changed: list[BundleChange]
    unchanged: list[str]
    removed: list[str]
    failed: list[BundleFailure] = Field(description="bundles that failed at this reload (the reply is 409 when there are any)")
    still_failed: list[BundleFailure] = Field(description="bundles that failed the same way at the previous load too (reported, not a 409)")
    serving: list[LoadedBundle]
