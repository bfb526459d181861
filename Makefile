# distillrec — the two commands a user needs:
#   make demo   # virtualenv, installs, MovieLens-100K, teacher, student, export, service on 127.0.0.1:8000
#   make test   # virtualenv, installs, lint and type checks, the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(HASH)
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: venv test demo clean images test-deploy

venv: $(STAMP)

# Installs distillrec with the extras $(1) into $(VENV), showing pip's progress. torch (pinned in the
# `train` extra) comes as the CPU build from PyTorch's CPU index when that answers within 5 s — plain
# PyPI's Linux wheel is the CUDA build, GBs — else from the configured package index. pip's own
# configuration (indexes, a local constraint file) stays in force.
define install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing distillrec[$(1)] into $(VENV) (first time only; a few minutes) ..."
	@if $(BIN)/python -c "import urllib.request; urllib.request.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
	  echo "torch: the CPU build from $(TORCH_CPU_INDEX)"; \
	  $(BIN)/python -m pip install --disable-pip-version-check --progress-bar off --index-url $(TORCH_CPU_INDEX) "$$(grep -o 'torch==[0-9.]*' pyproject.toml)"; \
	else echo "torch: $(TORCH_CPU_INDEX) did not answer within 5 s; from the configured package index"; fi
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e '.[$(1)]'
endef

# make test: everything; make demo: what the demo needs (no test tools)
EXTRAS_ALL  := train,serve,dev
EXTRAS_DEMO := train,serve

$(STAMP): pyproject.toml
	$(call install,$(EXTRAS_ALL))
	rm -f $(VENV)/.installed-* && touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	$(call install,$(EXTRAS_DEMO))
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/distillrec demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Docker: the images (offline-capable: see docker/build-images.sh --help) and the end-to-end
# deployment test with a real engine (compose up, endpoints, reload under load, replicas behind HAProxy)
images:
	docker/build-images.sh

test-deploy:
	docker/test-deploy.sh

clean:
	rm -rf $(VENV) .pytest_cache
