# The two commands of the quick start, and the chores around them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test compose-test bench reliability up down services tools clean

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

# the production stack on a real Docker engine (tests/stack.py): needs root on Debian bookworm;
# installs docker.io, docker-compose and debootstrap if missing, starts dockerd if none runs;
# `-m stack` overrides the "not stack" in pyproject's addopts that keeps it out of `make test`
compose-test: $(STAMP) services tools
	$(PY) -m pytest -m stack tests/test_compose_stack.py tests/test_compose_cluster.py $(PYTEST_ARGS)

# for a site with registry access (docs/operations.md); `make up CLUSTER=1` for three broker nodes
up:
	docker compose -f compose.yaml $(if $(CLUSTER),-f compose.cluster.yaml) up -d --build

down:
	docker compose -f compose.yaml $(if $(CLUSTER),-f compose.cluster.yaml) down

clean:
	rm -rf var/ .pytest_cache
