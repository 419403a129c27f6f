# The two commands of the README: `make run` serves the service locally, `make test` runs the tests.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 3000
ENGINE ?= moto
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck check clean check-template

$(STAMP): pyproject.toml shared/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m infra.local --port $(PORT) --engine $(ENGINE) $(if $(SEED),--seed,) $(if $(DATA_DIR),--data-dir $(DATA_DIR),)

# The engine: TOKENLEDGER_ENGINE from the environment, else ENGINE (moto); docs/engines.md.
test: $(STAMP)
	TOKENLEDGER_ENGINE=$${TOKENLEDGER_ENGINE:-$(ENGINE)} $(BIN)/pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	for handler in functions/*/app.py; do $(BIN)/mypy --no-error-summary $$handler || exit 1; done

check: lint typecheck test

# cfn-lint, checkov, `sam validate --lint` and `sam build`, each in its own venv (docs/deploy.md).
check-template:
	bash infra/check_template.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam

# Benchmarks (docs/benchmarks.md): prints the tables and writes bench/results.json; never fails on a time.
# BENCH_ARGS=--quick for fewer samples (CI); --skip SECTION... to leave sections out.
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# docs/openapi.json, generated from the handlers (a test fails when it is stale).
.PHONY: openapi
openapi: $(STAMP)
	$(BIN)/python -m infra.openapi

# Chaos workload (docs/reliability.md): seeded concurrent clients, faults injected at the DynamoDB
# client, every invariant checked after; exits 1 if one breaks. Override SEED, OPS, CLIENTS,
# FAULT_RATE, CHAOS_ENGINE (moto slows as tables grow: long runs go to DynamoDB Local).
# Release check: make chaos OPS=100000
CHAOS_ENGINE ?= dynamodb-local
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m infra.chaos --seed $(or $(SEED),1) --ops $(or $(OPS),20000) --clients $(or $(CLIENTS),8) \
		--fault-rate $(or $(FAULT_RATE),0.1) --engine $(CHAOS_ENGINE)
