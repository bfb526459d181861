"""``distillrec serve``: run the recommendation service (needs the ``serve`` extra, never torch)."""

from __future__ import annotations

from distillrec.commands.common import positive


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve exported bundles over REST (FastAPI + uvicorn)",
        description=(
            "Serve every bundle under --models-dir (at the version its LATEST names) on HOST:PORT with one uvicorn worker. "
            "Other settings come from DISTILLREC_* environment variables or .env (see docs/service.md); "
            "the options here override them. This command never imports torch."
        ),
    )
    p.add_argument("--models-dir", default=None, help="the model repository (default: $DISTILLREC_MODELS_DIR or models)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; use 0.0.0.0 only behind a proxy you trust)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--default-model", default=None, help="bundle for requests without 'model' (default: best student, else the only bundle)")
    p.add_argument("--ort-threads", type=positive, default=None, help="ONNX Runtime intra-op threads per session (default 1)")
    p.add_argument("--log-level", default=None, choices=["critical", "error", "warning", "info", "debug"], help="default: $DISTILLREC_LOG_LEVEL or info")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request (for benchmarks)")
    p.set_defaults(handler=run)


def run(args) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    given = {"models_dir": args.models_dir, "default_model": args.default_model, "ort_threads": args.ort_threads, "log_level": args.log_level}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})  # the rest from DISTILLREC_* / .env
    uvicorn.run(create_app(settings), host=args.host, port=args.port, workers=1, log_level=settings.log_level.lower(), access_log=not args.no_access_log)
    return 0
