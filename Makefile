# The two commands of the quick start, and the chores around them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench reliability up down services tools clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/coproduction run

services:
	@bash scripts/start-services.sh

tools:
	@bash scripts/install-tools.sh

test: $(STAMP) services tools
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) services
	$(PY) -m bench.run $(BENCH_ARGS)

reliability: $(STAMP) services tools
	rm -f test-output/reliability.json
	RELIABILITY_SCALE=full $(PY) -m pytest tests/test_reliability.py tests/test_bad_input.py $(PYTEST_ARGS)
	$(PY) scripts/reliability_doc.py

up:
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf var/ .pytest_cache
