"""The ASGI app for ``DISTILLREC_MODELS_DIR=models uvicorn service.main:app`` (settings from the environment / .env)."""

from service.app import create_app

app = create_app()
