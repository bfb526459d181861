# distillrec — the two commands a user needs:
#   make demo   # virtualenv, installs, MovieLens-100K, teacher, student, export, service on 127.0.0.1:8000
#   make test   # virtualenv, installs, the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv test demo clean

venv: $(STAMP)

# torch==2.13.0 is pinned in the `train` extra; pip's local constraint file (if any) stays in force.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing distillrec and its dependencies into $(VENV) (first time only) ..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[train,serve,dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/distillrec demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
