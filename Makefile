# Set-up and entry points; every target creates the virtual environment it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv bench clean

$(BIN)/vgpu-fix: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q fixer  # byte-code even where PYTHONDONTWRITEBYTECODE is set
	touch $@

venv: $(BIN)/vgpu-fix

demo: venv
	$(BIN)/vgpu-fix demo

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(BIN)/python scripts/bench_startup.py

clean:
	rm -rf $(VENV) build *.egg-info
