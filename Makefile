# medvl: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# Both create .venv and install what they need on first use (no manual step).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: demo test lint format install install-dev clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	bash scripts/install_wordnet.sh $(VENV) || echo "WordNet not installed: METEOR is off"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	bash scripts/install_wordnet.sh $(VENV) || echo "WordNet not installed: METEOR is off (its tests skip)"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/medvl run recipes/pipelines/demo.yaml

test: $(VENV)/.installed-dev lint
	@bash scripts/install_chromium.sh >/dev/null || echo "no chromium (not root?): browser tests skip"
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Debian's chromium for the report screenshot check and browser tests (root; does nothing when
# a chromium is already installed). `make test` runs the same script first.
browser:
	@bash scripts/install_chromium.sh >/dev/null

clean:
	rm -rf runs .pytest_cache .ruff_cache
