# The two commands of the README: `make run` serves the service locally, `make test` runs the tests.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 3000
ENGINE ?= moto
PYTEST_ARGS ?=

.PHONY: help install run test lint typecheck check clean check-template reconcile deploy

help: ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml shared/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -e ".[dev]"  # without setuptools' editable-install banner
	touch $(STAMP)

install: $(STAMP) ## create .venv with the pinned packages (every target does it on first use)

run: $(STAMP) ## serve the real handlers locally: PORT=3000 ENGINE=moto|dynamodb-local|endpoint SEED=1 DATA_DIR=
	$(BIN)/python -m infra.local --port $(PORT) --engine $(ENGINE) $(if $(SEED),--seed,) $(if $(DATA_DIR),--data-dir $(DATA_DIR),)

# The engine: TOKENLEDGER_ENGINE from the environment, else ENGINE (moto); docs/engines.md.
test: $(STAMP) ## the whole suite on 2 workers (ENGINE=moto|dynamodb-local, PYTEST_ARGS=...)
	TOKENLEDGER_ENGINE=$${TOKENLEDGER_ENGINE:-$(ENGINE)} $(BIN)/pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy on the packages and on each handler
	$(BIN)/mypy
	for handler in functions/*/app.py; do $(BIN)/mypy --no-error-summary $$handler || exit 1; done

check: lint typecheck test ## lint, typecheck and test

# cfn-lint, checkov, `sam validate --lint` and `sam build`, each in its own venv (docs/deploy.md).
check-template: ## cfn-lint, checkov, sam validate and sam build of template.yaml
	bash infra/check_template.sh

# One reconciliation run now against `make run` on PORT (docs/reconciliation.md); exit 3 if unhealthy.
reconcile: $(STAMP) ## one reconciliation run now against make run (PORT), then its report
	$(BIN)/tokenledger --url http://127.0.0.1:$(PORT) reconcile

# The one deploy path (docs/deploy.md): SAM in its own venv, python3.12 for the build, STAGE=dev|prod.
STAGE ?= dev
deploy: ## build and deploy the stack with SAM: STAGE=dev|prod (AWS credentials from the environment)
	bash infra/deploy.sh $(STAGE)

clean: ## remove .venv, the caches and .aws-sam
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam

# Benchmarks (docs/benchmarks.md): prints the tables and writes bench/results.json; never fails on a time.
# BENCH_ARGS=--quick for fewer samples (CI); --skip SECTION... to leave sections out.
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP) ## benchmarks: cost per operation, contention, cold start (BENCH_ARGS=--quick)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# docs/openapi.json, generated from the handlers (a test fails when it is stale).
.PHONY: openapi
openapi: $(STAMP) ## regenerate docs/openapi.json from the handlers
	$(BIN)/python -m infra.openapi

# Chaos workload (docs/reliability.md): seeded concurrent clients, faults injected at the DynamoDB
# client, every invariant checked after; exits 1 if one breaks. Override SEED, OPS, CLIENTS,
# FAULT_RATE, CHAOS_ENGINE (moto slows as tables grow: long runs go to DynamoDB Local).
# Release check: make chaos OPS=100000
CHAOS_ENGINE ?= dynamodb-local
.PHONY: chaos
chaos: $(STAMP) ## seeded fault-injecting workload, invariants checked after (SEED OPS CLIENTS FAULT_RATE; V=1 for details)
	$(BIN)/python -m infra.chaos --seed $(or $(SEED),1) --ops $(or $(OPS),20000) --clients $(or $(CLIENTS),8) \
		--fault-rate $(or $(FAULT_RATE),0.1) --engine $(CHAOS_ENGINE) $(if $(V),--verbose,)
