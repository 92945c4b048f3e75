# realm-operator — every target does its own set-up (npm ci, PostgreSQL) on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NPM ?= npm
NODE_ESM := node --experimental-vm-modules
JEST := $(NODE_ESM) node_modules/jest/bin/jest.js --ci
WITH_POSTGRES := npx tsx test/support/with-postgres.ts --

.PHONY: help install typecheck build test test-unit test-integration bench bench-fanout bench-lock demo migrate clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

node_modules/.install-stamp: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

install: node_modules/.install-stamp ## Install dependencies (npm ci)

typecheck: install ## Type-check src, test and bench (tsc --noEmit)
	npx tsc -p tsconfig.json

build: install ## Compile to dist/ with type declarations
	$(NPM) run build

test: typecheck build ## Type-check, unit and integration tests (real PostgreSQL)
	$(WITH_POSTGRES) $(JEST)

test-unit: install ## Unit tests only (pure logic)
	$(JEST) --selectProjects unit

test-integration: build ## Integration tests only (real PostgreSQL)
	$(WITH_POSTGRES) $(JEST) --selectProjects integration

bench: bench-fanout bench-lock ## All benchmarks (printed numbers, not tests)

bench-fanout: install ## NOTIFY fan-out to N listener processes vs raw pg LISTEN
	npx tsx bench/fanout.ts

bench-lock: install ## Lock hold time during publish for 100 / 1,000 / 10,000 files
	npx tsx bench/lock-hold.ts

demo: install ## Run PostgreSQL, three listener replicas and a publish, locally
	npx tsx hack/demo.ts

migrate: build ## Apply migrations to DATABASE_URL
	node dist/cli/main.js migrate

clean: ## Remove build output and dependencies
	rm -rf dist node_modules
