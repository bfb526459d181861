# The distillrec REST service: FastAPI + ONNX Runtime + FAISS, installed from the `serve` extra only —
# no torch (tests/test_docker_images.py fails if torch becomes reachable from this image).
#
#   docker/build-images.sh service      # or: DOCKER_BUILDKIT=0 docker build -f docker/service.Dockerfile -t distillrec-service .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/models:/models:ro" distillrec-service
#
# Bundles are read from /models (DISTILLREC_MODELS_DIR), mounted read-only; the service never writes.
# Every DISTILLREC_* setting (docs/deployment.md, .env.example) can be passed with -e.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build stage: a virtualenv with the package and the serve extra ---------------------------
FROM ${PYTHON_IMAGE} AS build
# lets docker/build-images.sh remove this stage once the runtime image is built
LABEL org.distillrec.image=build-stage
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/venv/bin:$PATH
# extra certificate authorities for pip (docker/certs/*.crt; see docker/certs/README.md)
COPY docker/certs/ /usr/local/share/ca-certificates/distillrec/
RUN update-ca-certificates >/dev/null && python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
# the sources: the service and its bundle contract (service/), nothing of training/ or distillrec/
COPY service ./service
RUN pip install --no-cache-dir ".[serve]"

# ---- runtime stage: the virtualenv, a non-root user, nothing else ------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DISTILLREC_MODELS_DIR=/models \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin distillrec \
 && mkdir -p /models
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/distillrec-healthcheck
WORKDIR /srv
USER 10001:10001
EXPOSE 8000
# Ready only when at least one bundle is loaded and warmed up (GET /readyz answers 200).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/distillrec-healthcheck"]
# Host and port come from UVICORN_HOST / UVICORN_PORT (0.0.0.0:8000 here); one worker per container —
# scale out with more containers (docker compose --scale, a Deployment), not more workers.
CMD ["uvicorn", "service.main:app", "--workers", "1", "--timeout-graceful-shutdown", "10"]
