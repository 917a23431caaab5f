# The two commands a newcomer runs (see README):
#   make demo   set everything up, then solve the bundled example pattern
#   make test   set everything up, then lint, type-check and run the full test suite
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= out/demo

.PHONY: demo test venv browser lint typecheck pytest test-fast test-slow test-all clean

venv:
	@bash .ci/venv.sh

# Headless Chromium for the report rendering test (installed from Debian's packages when missing).
browser:
	@bash .ci/browser.sh

demo: venv
	@$(BIN)/xrdsolve info data/examples/demo_pattern.xye --peaks 8
	@$(BIN)/xrdsolve solve data/examples/demo_pattern.xye --composition TiO2 --candidates 24 -k 4 --seed 0 --report -o $(DEMO_OUT)

lint: venv
	$(BIN)/ruff check xrdsolve conditioning refine tests data notebooks
	$(BIN)/ruff format --check xrdsolve conditioning refine tests data notebooks

# mypy cannot see the package-dir mapping of an editable install, so type-check a symlinked
# view of the installed layout (xrdsolve/, xrdsolve/conditioning, xrdsolve/refine).
typecheck: venv
	@rm -rf build/typecheck && mkdir -p build/typecheck
	@cp -rs "$(CURDIR)/xrdsolve" build/typecheck/xrdsolve
	@ln -s "$(CURDIR)/conditioning" build/typecheck/xrdsolve/conditioning
	@ln -s "$(CURDIR)/refine" build/typecheck/xrdsolve/refine
	cd build/typecheck && "$(CURDIR)/$(BIN)/mypy" --config-file "$(CURDIR)/pyproject.toml" -p xrdsolve

# The default suite skips tests marked slow (run them with `make test-slow`; `make test-all` runs both).
pytest: venv browser
	$(BIN)/python -m pytest -q -m "not slow" --durations=15

test: lint typecheck pytest

test-fast: venv browser
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: venv browser
	$(BIN)/python -m pytest -q -m slow

test-all: venv browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache out
