# realm-operator — every target does its own set-up (npm ci, PostgreSQL) on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NPM ?= npm
# Node 24 comes from npm (the `node` devDependency), whatever Node the machine has: `npm ci` runs
# under the machine's Node, and every recipe after it finds node_modules/.bin (node, npm's
# shebang, tsc, tsx) first on PATH, so tsc, jest, tsx, the operator and the processes the tests
# spawn all run that Node 24.
MACHINE_PATH := $(subst $(CURDIR)/node_modules/.bin:,,$(PATH))
export PATH := $(CURDIR)/node_modules/.bin:$(MACHINE_PATH)
NODE_MAJOR := 24
NODE_ESM := node --experimental-vm-modules
JEST := $(NODE_ESM) node_modules/jest/bin/jest.js --ci
WITH_POSTGRES := npx tsx test/support/with-postgres.ts --
WITH_TEST_ENV := npx tsx test/support/with-test-env.ts --kube --

.PHONY: help install typecheck build test test-unit test-integration test-e2e gitops-tools chart monitoring-tools install-kubectl-realm bench $(BENCHES) bench-lock bench-report demo migrate clean crds kube-assets synapse kind-up kind-down image kind-load deploy e2e-kind

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

node_modules/.install-stamp: package.json package-lock.json
	PATH='$(MACHINE_PATH)' $(NPM) ci --no-audit --no-fund
	@node -e 'process.exit(process.versions.node.split(".")[0] === "$(NODE_MAJOR)" ? 0 : 1)' || { \
	  echo "node_modules/.bin/node is not Node $(NODE_MAJOR) (npm ci must run the \`node\` package's install script; is ignore-scripts set?)" >&2; exit 1; }
	@touch $@

install: node_modules/.install-stamp ## Install dependencies (npm ci)

typecheck: install ## Type-check src, test and bench (tsc --noEmit)
	npx tsc -p tsconfig.json

build: install ## Compile to dist/ with type declarations
	$(NPM) run build

test: typecheck build kube-assets synapse gitops-tools monitoring-tools model-tools ## Type-check; unit, integration and end-to-end tests (real PostgreSQL, kube-apiserver and Synapse)
	$(WITH_TEST_ENV) bash -c '$(JEST) --selectProjects unit integration && $(JEST) --selectProjects e2e --runInBand'

test-unit: install ## Unit tests only (pure logic)
	$(JEST) --selectProjects unit

test-integration: build kube-assets synapse gitops-tools model-tools ## Integration tests only (real PostgreSQL, Kubernetes API server and Synapse)
	$(WITH_TEST_ENV) $(JEST) --selectProjects integration

test-e2e: build kube-assets ## End-to-end tests only: the operator as a process, one suite at a time (they load the machine)
	$(WITH_TEST_ENV) $(JEST) --selectProjects e2e --runInBand

kube-assets: ## Build or locate etcd/kube-apiserver/kubectl
	bash hack/kube-assets.sh

.PHONY: model model-tools
model-tools: ## Install Spin for the protocol model (Debian's package, unpacked once into ~/.cache/realm-operator)
	bash hack/model.sh --install >/dev/null

model: model-tools ## Model-check the invalidation protocol (model/) and that every mutant fails; MODEL=full for all faults at once
	bash hack/model.sh

gitops-tools: ## Build/install the tools the GitOps and Helm tests run (kstatus-check, helm, lua5.1), cached
	bash hack/gitops-tools.sh

chart: install kube-assets ## Regenerate charts/realm-operator from deploy/base and the CRDs
	npx tsx hack/generate-chart.ts

synapse: ## Install Synapse (Matrix homeserver for the tests) into a cached venv, once
	bash hack/synapse.sh

monitoring-tools: ## Build promtool from the Go module proxy and fetch the Prometheus Operator CRDs (monitoring tests), cached
	bash hack/promtool.sh
	bash hack/prometheus-operator-crds.sh

KUBECTL_PLUGIN_DIR ?= $(HOME)/.local/bin
install-kubectl-realm: build ## Put the `kubectl realm` plugin on PATH: symlink bin/kubectl-realm into KUBECTL_PLUGIN_DIR (~/.local/bin)
	mkdir -p '$(KUBECTL_PLUGIN_DIR)' && ln -sf '$(CURDIR)/bin/kubectl-realm' '$(KUBECTL_PLUGIN_DIR)/kubectl-realm'
	@echo "installed $(KUBECTL_PLUGIN_DIR)/kubectl-realm; try: kubectl realm status -A"

# Benchmarks print tables (medians, p99, ratios against baselines measured in the same run) and
# write raw data to bench/results/; `make bench-report` renders docs/benchmarks.md from it.
# bench-fanout last: its 100-process fleets leave the 2 cores loaded for a while after they exit.
BENCHES := bench-publish bench-staging bench-boxel bench-scale bench-controller-runtime bench-fanout
bench: $(BENCHES) bench-report ## All benchmarks, then docs/benchmarks.md (printed numbers, not tests)

bench-publish: build kube-assets ## apply -> Ready with 3 acknowledging replicas, 10/1,000/10,000 files, per phase
	npx tsx bench/publish-latency.ts

bench-staging: build ## Staging: first publish vs cp -a + sync, republish with one changed file vs full copy
	npx tsx bench/staging.ts

bench-boxel: build ## Against Boxel's publish sequence: lock hold, latency, stale reads with a killed listener
	npx tsx bench/boxel-comparison.ts

bench-fanout: build ## Acknowledged fan-out at 1/10/50 replicas vs receive-only and receive-and-ack floors
	npx tsx bench/fanout.ts

bench-scale: build kube-assets ## 1,000 PublishedRealms -> all Ready, RSS; restart -> idle, republishes (median of 3 runs)
	SCALE_RUNS=$${SCALE_RUNS:-3} npx tsx bench/scale.ts

bench-controller-runtime: build kube-assets ## Status-only convergence of 1,000 objects vs a controller-runtime peer
	npx tsx bench/controller-runtime.ts

bench-lock: build ## Lock hold during publish for 10 / 1,000 / 10,000 files: back to back, and after a quiet spell with and without warm connections
	npx tsx bench/lock-hold.ts

bench-report: install ## Render docs/benchmarks.md (tables + SVG plots) from bench/results/
	npx tsx bench/report.ts

demo: build kube-assets ## Run PostgreSQL, a control plane, the operator and three replicas; publish and republish
	npx tsx hack/demo.ts

migrate: build ## Apply migrations to DATABASE_URL
	node dist/cli/main.js migrate

clean: ## Remove build output and dependencies
	rm -rf dist node_modules

crds: install ## Regenerate crds/ from the zod schemas in src/api
	npx tsx hack/generate-crds.ts

# --- kind (machines with Docker; everything built locally, docs/kind.md) ---------------------
# One code path here and for users: hack/kind/*.sh install/start what they need and cache their
# products under ~/.cache/realm-operator keyed by version.
KIND_CLUSTER ?= realm-operator
IMG ?= realm-operator:dev

kind-up: ## Create the single-node kind cluster (Docker, kind and the node image built as needed); prints KUBECONFIG
	bash hack/kind/docker.sh && KIND_CLUSTER=$(KIND_CLUSTER) bash hack/kind/cluster.sh up

kind-down: ## Delete the kind cluster
	KIND_CLUSTER=$(KIND_CLUSTER) bash hack/kind/cluster.sh down

image: ## Build the operator image IMG (default realm-operator:dev), starting Docker if needed (docs/kind.md)
	bash hack/kind/docker.sh && IMG=$(IMG) bash hack/kind/images.sh operator

kind-load: ## Build the images deploy/kind runs and load them into the kind cluster
	bash hack/kind/docker.sh && IMG=$(IMG) bash hack/kind/images.sh
	KIND_CLUSTER=$(KIND_CLUSTER) bash hack/kind/cluster.sh load-overlay deploy/kind

deploy: ## Deploy deploy/kind (CRD, operator, realm servers, PostgreSQL, seed Job) to the kind cluster and wait for it
	KIND_CLUSTER=$(KIND_CLUSTER) bash hack/kind/cluster.sh deploy deploy/kind

e2e-kind: ## End to end in a real kind cluster: build, create, load, deploy, run the kind suite, delete (KEEP_CLUSTER=1 keeps it)
	KIND_CLUSTER=$(KIND_CLUSTER) IMG=$(IMG) bash hack/kind/e2e.sh

.PHONY: consistency
consistency: build kube-assets ## Full-length consistency suite: 200 publishes per scenario under faults (long)
	CONSISTENCY_PUBLISHES=200 $(WITH_TEST_ENV) $(JEST) --selectProjects e2e --runInBand --testPathPatterns consistency
