"""Service settings: environment variables with the ``DISTILLREC_`` prefix (a ``.env`` file is read too)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level of the distillrec.service logger (and of uvicorn under `distillrec serve`)")
