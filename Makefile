# vxtrace: build, generate, test. Root is needed for `test`, `demo` and
# `bench`: they load BPF programs and build labs in network namespaces.

export PATH := $(PATH):/usr/local/go/bin
GO       ?= go
CLANG    ?= $(shell command -v clang-19 || command -v clang)
STRIP    ?= $(shell command -v llvm-strip-19 || command -v llvm-strip)
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Execution counts, not durations: a duration-based -fuzztime races Go
# 1.26's fuzz coordinator (golang/go#75804) and fails with "context deadline
# exceeded" and no failing input under load.
FUZZTIME ?= 150000x
BIN      := bin

# Debian packages the build, the tests and the labs need.
APT_PKGS := clang-19 llvm-19 libbpf-dev bpftool iproute2 iptables nftables \
            busybox-static docker.io containerd runc tmux iperf3 tcpdump procps kmod \
            util-linux libcap2-bin

.PHONY: help deps generate check-generated build test test-unit fuzz lint demo bench bench-smoke soak profile compare clean

help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install the Debian packages above (root; skips what is there)
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs none /sys/kernel/tracing 2>/dev/null || true

generate: ## rebuild the committed bpf2go output with clang
	cd tracer && BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) $(GO) generate ./

check-generated: generate ## fail if the committed BPF objects differ from a fresh build
	@git diff --exit-code --stat -- tracer/ || { echo "tracer/*_bpfel.* are stale: run 'make generate' and commit"; exit 1; }

build: ## build bin/vxtrace and bin/vxlab (no clang needed)
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/vxtrace ./cmd/vxtrace
	CGO_ENABLED=0 $(GO) build -o $(BIN)/vxlab ./cmd/vxlab

lint: ## gofmt, go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test-unit: ## tests that need no root (root tests skip themselves)
	$(GO) test -count=1 ./...

fuzz: ## run every fuzz target for FUZZTIME each (executions, e.g. 150000x)
	@scripts/fuzz.sh $(FUZZTIME)

test: deps check-generated lint ## every test, as root: unit, BPF, labs, Docker swarm, TUI, fuzz
	$(GO) test -p 1 -count=1 -timeout 80m ./...
	@scripts/fuzz.sh $(FUZZTIME)

demo: deps build ## lab with a fault, trace a ping across it, show the verdict, tear down
	@scripts/demo.sh

bench: deps build ## throughput with and without vxtrace, tcpdump and empty programs, BPF ns/run (about 23 min)
	@scripts/bench.sh

bench-smoke: deps build ## one short block of each bench mode: keeps the bench working (CI)
	@BENCH_ARGS="--blocks 1 --seconds 3 --out /tmp/vxtrace-bench-smoke.json" scripts/bench.sh

soak: deps build ## trace-all for 10 minutes, printing the tracer's RSS and heap over time
	@BENCH_ARGS="--soak 10m" scripts/bench.sh

profile: deps build ## where the CPU goes while vxtrace misses, then traces, every packet: perf samples per BPF program and part
	@command -v perf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
	@BENCH_ARGS="--profile 20s" scripts/bench.sh

compare: deps build ## BPF run time of this tree's vxtrace vs BASE's, both attached to one flood (BASE=<git revision>)
	@BASE="$(BASE)" scripts/compare.sh

clean:
	rm -rf $(BIN)
