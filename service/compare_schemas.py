"""Wire schemas of ``POST /v1/compare`` and of the remote teachers listed by ``GET /v1/models``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.schemas import JsonInt, ModelsResponse, _Request
from service.settings import HARD_MAX_BENCHMARK_REQUESTS, HARD_MAX_K


class RemoteTeacher(BaseModel):
    name: str = Field(description="endpoint name from DISTILLREC_TEACHER_ENDPOINTS")
    url: str
    model: str | None = Field(description="bundle asked for at that endpoint (None: its default model)")
    reachable: bool = Field(description="it answered GET /readyz")
    ready: bool = Field(description="GET /readyz answered 200")
    probe_ms: float
    problem: str | None


class ModelsWithRemoteResponse(ModelsResponse):
    remote_teachers: list[RemoteTeacher] = Field(description="teacher endpoints (DISTILLREC_TEACHER_ENDPOINTS) and whether they answer now")


class CompareRequest(_Request):
    targets: list[str] = Field(
        min_length=1,
        max_length=8,
        description="local bundle names and teacher endpoint names (DISTILLREC_TEACHER_ENDPOINTS), each once",
        examples=[["teacher", "ml100k-student"]],
        json_schema_extra={"uniqueItems": True},
    )
    reference: str | None = Field(
        None, max_length=64, description="target the agreement is measured against (default: the first endpoint among the targets, else the first target)"
    )
    users: JsonInt = Field(
        200,
        ge=1,
        le=HARD_MAX_BENCHMARK_REQUESTS,
        description="users sampled from the local bundles; each target gets one request per user (at most DISTILLREC_COMPARE_MAX_USERS)",
    )
    k: JsonInt = Field(10, ge=1, le=HARD_MAX_K)
    concurrency: JsonInt = Field(1, ge=1, le=256, description="users in flight at once (at most DISTILLREC_COMPARE_MAX_CONCURRENCY)")
    timeout_s: float | None = Field(None, gt=0, le=60, description="timeout of one request (default and maximum: DISTILLREC_REMOTE_TIMEOUT_S)")
    seed: JsonInt = Field(0, ge=0, le=2**31 - 1, description="seed of the sampled users")


class Agreement(BaseModel):
    users: int = Field(description="users both this target and the reference answered")
    overlap_at_k: float | None
    rbo: float | None = Field(description="rank-biased overlap (extrapolated, p = 0.9)")
    kendall_tau: float | None = Field(description="Kendall τ of the items both lists contain, mean over users with at least two")
    ndcg_at_k: float | None = Field(description="NDCG@k of this list with the reference's top-k as the relevant items")


class CompareTargetResult(BaseModel):
    name: str
    kind: str = Field(description="'local' (a bundle of this service, called through its own address) or 'endpoint'")
    url: str
    model: str | None
    requests: int
    ok: int
    errors: int
    timeouts: int
    error_kinds: dict[str, int] = Field(description="failures by kind: timeout, unreachable, http_<status>, bad_reply")
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    throughput_rps: float = Field(
        description="concurrency / mean latency: requests per second this target sustains with `concurrency` in flight (Little's law)"
    )
    speedup_p50_vs_reference: float | None = Field(description="p50 of the reference / p50 of this target")
    agreement: Agreement


class CompareResponse(BaseModel):
    k: int
    concurrency: int
    timeout_s: float
    seed: int
    users_sampled: int
    users_done: int = Field(description="users every target was asked about before the run ended")
    distinct_users: int
    wall_s: float
    requests_per_second: float = Field(description="requests to all targets together / wall time")
    stopped_early: bool = Field(description="the run hit DISTILLREC_COMPARE_MAX_SECONDS before every user was done")
    reference: str
    targets: list[CompareTargetResult]
    method: str
