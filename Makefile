# distillrec — the two commands a user needs:
#   make demo   # virtualenv, installs, MovieLens-100K, teacher, student, export, service on 127.0.0.1:8000
#   make test   # virtualenv, installs, the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv test demo lint clean

venv: $(STAMP)

# torch==2.13.0 is pinned in the `train` extra; pip's local constraint file (if any) stays in force.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,serve,dev]'
	rm -f $(VENV)/.installed-* && touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
