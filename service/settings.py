"""Service settings: environment variables with the ``DISTILLREC_`` prefix (a ``.env`` file is read too)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.remote import Endpoint, parse_base_url, parse_endpoints

#: Hard ceilings of the request schemas; the configured limits below must stay under them.
HARD_MAX_K = 1000
HARD_MAX_BATCH = 10000
HARD_MAX_HISTORY = 10000
HARD_MAX_BENCHMARK_REQUESTS = 100000
#: longest user or item id a request may carry (ids are echoed in errors, so they are bounded)
MAX_ID_CHARS = 256


class Settings(BaseSettings):
    """Everything the service reads from its environment.

    ``DISTILLREC_MODELS_DIR=models DISTILLREC_ADMIN_TOKEN=… uvicorn service.main:app``, or the same
    keys in ``.env``. Limits are enforced per request (422 above them) and advertised in the OpenAPI
    schema.
    """

    model_config = SettingsConfigDict(env_prefix="DISTILLREC_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    models_dir: Path = Field(Path("models"), description="the model repository: one folder per bundle, each with a LATEST pointer")
    default_model: str | None = Field(None, description="bundle used when a request names no model (default: best student, else the only bundle)")
    max_k: int = Field(100, ge=1, le=HARD_MAX_K, description="largest k a request may ask for")
    max_batch: int = Field(256, ge=1, le=HARD_MAX_BATCH, description="most users in one /v1/recommend/batch call")
    max_history: int = Field(1000, ge=1, le=HARD_MAX_HISTORY, description="most item ids in one /v1/recommend/history call")
    admin_token: SecretStr | None = Field(None, description="bearer token for /v1/admin/*; admin endpoints are disabled without it")
    ort_threads: int = Field(1, ge=1, le=256, description="ONNX Runtime intra-op threads per session (1 is best for latency under concurrency)")
    benchmark_max_requests: int = Field(5000, ge=1, le=HARD_MAX_BENCHMARK_REQUESTS, description="cap on requests (and warm-up) per /v1/benchmark call")
    benchmark_max_seconds: float = Field(30.0, gt=0, le=3600, description="wall-time limit of one /v1/benchmark call; it stops when its client disconnects too")
    max_body_bytes: int = Field(1 << 20, ge=1024, le=1 << 30, description="largest request body accepted (413 above it)")
    max_scoring_calls: int = Field(2, ge=1, le=256, description="learned-scorer (NeuMF) batch chunks scored at once, over all requests; the others wait")
    warmup_requests: int = Field(32, ge=0, le=10000, description="recommendations computed per bundle at load, before it is reported ready")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="log level of the distillrec.service logger (and of uvicorn under `distillrec serve`)"
    )

    # teacher endpoints, POST /v1/compare and shadow mode (docs/service.md, "Teacher endpoints")
    teacher_endpoints: str = Field(
        "", description="remote teachers, 'name=http://host:port[#model]', comma-separated; POST /v1/compare and shadow mode call them"
    )
    remote_timeout_s: float = Field(2.0, gt=0, le=60, description="timeout in seconds of one call to a teacher endpoint (and the most /v1/compare may ask for)")
    self_url: str | None = Field(None, description="base URL /v1/compare calls local models through (default: the address the request arrived on)")
    compare_max_users: int = Field(
        1000, ge=1, le=HARD_MAX_BENCHMARK_REQUESTS, description="most users per /v1/compare call (each target gets one request per user)"
    )
    compare_max_seconds: float = Field(60.0, gt=0, le=3600, description="wall-time cap of one /v1/compare call; it stops early and says so")
    compare_max_concurrency: int = Field(16, ge=1, le=256, description="most users in flight in one /v1/compare call")
    shadow_endpoint: str | None = Field(None, description="teacher endpoint that live /v1/recommend requests are mirrored to (shadow mode)")
    shadow_fraction: float = Field(0.0, ge=0, le=1, description="share of /v1/recommend requests mirrored to shadow_endpoint (0: shadow mode off)")
    shadow_concurrency: int = Field(4, ge=1, le=256, description="most mirrored requests in flight at once")
    shadow_queue: int = Field(256, ge=1, le=100000, description="mirrored requests waiting to be sent; when full, new ones are dropped and counted")

    @field_validator("teacher_endpoints")
    @classmethod
    def _valid_endpoints(cls, value: str) -> str:
        parse_endpoints(value)
        return value

    @field_validator("self_url")
    @classmethod
    def _valid_self_url(cls, value: str | None) -> str | None:
        return None if not value else parse_base_url(value, "DISTILLREC_SELF_URL")

    @model_validator(mode="after")
    def _valid_shadow(self) -> Settings:
        if self.shadow_endpoint and self.shadow_endpoint not in self.endpoints():
            names = ", ".join(sorted(self.endpoints())) or "none"
            raise ValueError(f"DISTILLREC_SHADOW_ENDPOINT={self.shadow_endpoint!r} is not in DISTILLREC_TEACHER_ENDPOINTS (configured: {names}).")
        if self.shadow_fraction > 0 and not self.shadow_endpoint:
            raise ValueError("DISTILLREC_SHADOW_FRACTION is above 0 but DISTILLREC_SHADOW_ENDPOINT is not set: name the teacher endpoint to mirror to.")
        return self

    def endpoints(self) -> dict[str, Endpoint]:
        """The configured teacher endpoints by name."""
        return parse_endpoints(self.teacher_endpoints)
