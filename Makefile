# Hookline: `make run` runs the all-in-one (embedded NATS); `make test` runs every test.
SHELL := /bin/bash
MODULES := ./pkg ./migrations ./services/ingress ./services/processor ./services/dispatcher ./services/hookline
SERVICES := ingress processor dispatcher hookline

.PHONY: run build test vet fmt-check bench bench-quick fuzz clean

# Only builds and starts: no vet, tidy or tests.
run:
	@scripts/run.sh

build:
	@mkdir -p bin
	@for s in $(SERVICES); do go build -o bin/$$s ./services/$$s || exit 1; done

test:
	go test -race -timeout 14m -count=1 $$(go list -f '{{.Dir}}/...' -m)

vet:
	go vet $$(go list -f '{{.Dir}}/...' -m)

fmt-check:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Brief fuzzing of every fuzz target (CI runs this too).
FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in ./pkg/webhook ./pkg/event ./pkg/httpapi; do \
	  for t in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t"; go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

bench:
	@scripts/bench.sh

clean:
	rm -rf bin

# Cluster suite (pkg/clustertest): three nats-server processes clustered through TCP proxies
# the tests control, R3 streams, the services as processes; a node killed, cut off, restarted
# under 20,000 events (HOOKLINE_CLUSTER_SCALE=0.1 for a quick run). Figures are appended to
# CLUSTER_REPORT (JSON lines, gitignored under bin/).
CLUSTER_REPORT ?= $(CURDIR)/bin/cluster-report.jsonl
.PHONY: cluster
cluster:
	@mkdir -p bin
	cd pkg && HOOKLINE_CLUSTER=1 HOOKLINE_CLUSTER_REPORT=$(CLUSTER_REPORT) go test -count=1 -timeout 60m -v -run '^(TestHarness|TestCluster)' ./clustertest/

# Fault-injection suite (pkg/chaostest): services as processes, a nats-server process and a
# private PostgreSQL cluster (needs PostgreSQL 15's initdb and pg_ctl); every scenario's
# figures are appended to CHAOS_REPORT (JSON lines, gitignored under bin/). `make test` runs
# its quick part (TestChaosQuick).
CHAOS_REPORT ?= $(CURDIR)/bin/chaos-report.jsonl
.PHONY: chaos
chaos:
	@mkdir -p bin
	cd pkg && HOOKLINE_CHAOS=1 HOOKLINE_CHAOS_REPORT=$(CHAOS_REPORT) go test -count=1 -timeout 75m -v -run '^TestChaos(Soak)?$$' ./chaostest/

# The soak alone (TestChaosSoak, 7 to 10 minutes measured; make chaos runs it too): 200,000 events to
# 10,000 webhooks while the RSS of every process is sampled each second (docs/reliability.md).
.PHONY: soak
soak:
	@mkdir -p bin
	cd pkg && HOOKLINE_CHAOS=1 HOOKLINE_CHAOS_REPORT=$(CHAOS_REPORT) go test -count=1 -timeout 30m -v -run '^TestChaosSoak$$' ./chaostest/
