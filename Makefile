# Cellar. `make demo` runs the pipeline end to end; `make test` runs the whole suite.
# Both provision what they need (npm ci, Debian packages when missing) and start private services
# in temp folders on free ports, which they stop when done.
SHELL := /bin/bash
NODE_TSX := node --import tsx
export NPM_CONFIG_UPDATE_NOTIFIER := false

.PHONY: provision build typecheck test test-faults demo bench clean

provision:
	@bash infra/local/provision.sh

typecheck: provision
	npx tsc -p tsconfig.json --noEmit

build: provision
	npx tsc -p tsconfig.json

test: provision typecheck
	npx vitest run

# The fault suite alone, with 20 SIGKILL trials per worker; prints each trial's outcome.
test-faults: provision
	CELLAR_FAULT_TRIALS=20 npx vitest run test/faults

demo: provision
	$(NODE_TSX) pipelines/cli/main.ts demo

clean:
	rm -rf dist test-artifacts

# Benchmarks run the compiled code, as production does.
bench: build
	node dist/bench/run.js
