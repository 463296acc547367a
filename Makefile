# Cellar. `make demo` runs the pipeline end to end; `make test` runs the whole suite.
# Both provision what they need (npm ci, Debian packages when missing), compile dist/ (so `npx cellar`,
# bin/cellar.js, starts from compiled code) and start private services in temp folders on free ports,
# which they stop when done. `make demo ARGS=--keep-running` keeps the pipeline and dashboard up until Ctrl-C.
SHELL := /bin/bash
export NPM_CONFIG_UPDATE_NOTIFIER := false

.PHONY: provision build typecheck test test-faults demo bench bench-scale bench-kafka-scale clean up down

provision:
	@bash infra/local/provision.sh

typecheck: provision
	npx tsc -p tsconfig.json --noEmit

# dist/ is compiled again only when a source changed since the last build that succeeded.
TS_SOURCES := $(shell find pipelines connectors schemas sinks infra test bench -name '*.ts' 2>/dev/null) vitest.config.ts tsconfig.json package.json
build: provision dist/.built
dist/.built: $(TS_SOURCES)
	npx tsc -p tsconfig.json
	@touch $@

# tsc type-checks as it compiles: a type error stops here, as `make typecheck` would (and the next run compiles again).
test: provision build
	npx vitest run

# The fault suites alone: 20 SIGKILL trials per Kafka worker and 20 kills of the embedded runtime.
test-faults: provision
	CELLAR_FAULT_TRIALS=20 npx vitest run test/faults test/e2e/embedded.test.ts

# Extra flags of `cellar demo`: make demo ARGS="--keep-running --rate 2000" (cellar demo --help lists them).
ARGS ?=
demo: provision build
	$(if $(findstring --keep-running,$(ARGS)),,@echo "make demo: the dashboard closes when the demo ends; make demo ARGS=--keep-running keeps it open until Ctrl-C.")
	node $(NODE_FLAGS) bin/cellar.js demo $(ARGS)

clean:
	rm -rf dist test-artifacts

# Node flags of every Cellar process (CELLAR_NODE_FLAGS in infra/local/cellar-process.ts: why).
NODE_FLAGS := --max-semi-space-size=64 --initial-old-space-size=256

# Benchmarks run the compiled code, as production does.
bench: build
	node $(NODE_FLAGS) dist/bench/run.js

# Cost as work grows up to 10M contributors (the scale suite with 10M added; about 20 min on a quiet machine).
bench-scale: build
	CELLAR_BENCH_SCALE_SIZES=100000,1000000,10000000 node $(NODE_FLAGS) dist/bench/run.js scale

# The Kafka runtime's four workers at 100k, 1M and 10M contributors (about 50 min; the bench keeps the 10M-row
# supplier table in memory, hence the larger heap).
bench-kafka-scale: build
	CELLAR_BENCH_KAFKA_SCALE_SIZES=100000,1000000,10000000 node $(NODE_FLAGS) --max-old-space-size=8192 dist/bench/run.js kafka-scale

# The production-shaped stack of infra/compose (Kafka, Schema Registry, Debezium, Postgres, Redis, two seeded
# suppliers, the four workers, Prometheus, Grafana); needs a Docker engine. Operating it: docs/OPERATIONS.md.
COMPOSE_FILE := infra/compose/docker-compose.yml
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

up:
	@docker info >/dev/null 2>&1 || { echo "make up: no Docker engine answers (docker info failed): start Docker or set DOCKER_HOST. Without Docker, 'make demo' runs the whole pipeline on private services." >&2; exit 1; }
	$(COMPOSE) -f $(COMPOSE_FILE) up -d --build
	@echo "Grafana http://127.0.0.1:13000  Prometheus http://127.0.0.1:19090  Kafka Connect http://127.0.0.1:18083  (ports: CELLAR_COMPOSE_*_PORT)"

down:
	@docker info >/dev/null 2>&1 || { echo "make down: no Docker engine answers (docker info failed): nothing to stop." >&2; exit 1; }
	$(COMPOSE) -f $(COMPOSE_FILE) down
