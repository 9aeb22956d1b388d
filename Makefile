# pipelines: real-time data pipelines on Apache Kafka and Spark Structured Streaming with Delta Lake.
# `make run` and `make test` are all a new user types; both run `make setup` first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test` runs the suite on this many pytest-xdist workers (tests.helpers.xdist_group keeps
# the SparkSession's tests on one worker and the cluster's on one); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
BENCH_ARGS ?=
# `make run FORMAT=avro`: the demo in Avro, with the local schema registry (`pipelines demo --format
# avro`); RUN_ARGS passes any other option of `pipelines demo`, e.g. RUN_ARGS="--count 20000".
FORMAT ?=
RUN_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup jars run test test-fast lint format broker-start broker-stop clean
.PHONY: cluster-up cluster-down bench

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(INSTALLED) jars ## Create .venv, install the package with dev tools, resolve the JVM jars (idempotent)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@command -v java >/dev/null || { echo "Java 17+ is needed for Spark and the Kafka broker (Debian: apt-get install openjdk-17-jdk-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is needed to resolve the Kafka and Delta jars once (Debian: apt-get install maven)"; exit 1; }
	@echo "==> creating $(VENV) and installing pipelines[dev] (pyspark builds from a 450 MB archive the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

jars: $(INSTALLED) ## Resolve the Kafka and Delta jars with Maven into .jars/ (quick when up to date)
	@$(BIN)/pipelines jars --resolve

run: setup ## Run the whole stack once: local Kafka broker, seeded events, Spark job into Delta, a table of what it wrote (FORMAT=avro: in Avro with a schema registry; RUN_ARGS="--count N")
	@$(BIN)/pipelines demo $(if $(FORMAT),--format $(FORMAT)) $(RUN_ARGS)

test: setup ## Run the whole test suite on a real broker and a real SparkSession (two workers; the 15 slowest tests listed at the end)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

test-fast: setup ## Run the tests that need neither the broker nor Spark (seconds)
	$(BIN)/pytest -m "not kafka and not spark" $(PYTEST_ARGS)

lint: setup ## ruff and mypy
	$(BIN)/ruff check pipelines jobs tests
	$(BIN)/ruff format --check pipelines jobs tests
	$(BIN)/mypy

format: setup ## Format the code with ruff
	$(BIN)/ruff format pipelines jobs tests
	$(BIN)/ruff check --fix pipelines jobs tests

bench: setup ## Benchmark the project against the tutorial pattern, Quix Streams and Kafka's own tools (~30 min on 2 cores; BENCH_ARGS="--quick" for a smoke test of a few minutes)
	@[ -x .venv-quix/bin/python ] || { echo "==> creating .venv-quix for Quix Streams (it pins confluent-kafka<2.13)"; \
	  $(PYTHON) -m venv .venv-quix && .venv-quix/bin/pip install --quiet -r bench/requirements-quix.txt; }
	$(BIN)/python -m bench $(BENCH_ARGS)

broker-start: setup ## Start the local Kafka broker in the background (prints its bootstrap servers)
	@$(BIN)/pipelines broker start

broker-stop: ## Stop the local Kafka broker
	@$(BIN)/pipelines broker stop

cluster-up: setup ## Start 3 replicated Kafka brokers and a Spark master with 2 workers on 127.0.0.1 (profile conf/cluster.yaml)
	@$(BIN)/pipelines cluster up

cluster-down: ## Stop the local Spark cluster and the 3 Kafka brokers (their data stays)
	@$(BIN)/pipelines cluster down

clean: ## Stop the broker and the local cluster, remove local state (.pipelines/); keeps .venv and .jars
	-@[ -x $(BIN)/pipelines ] && $(BIN)/pipelines broker stop
	-@[ -x $(BIN)/pipelines ] && $(BIN)/pipelines cluster down
	rm -rf .pipelines spark-warehouse
