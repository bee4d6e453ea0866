# p2pd — build, test and run. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/p2pd-go/p2pd/internal/version.Version=$(VERSION)
CMDS := $(patsubst cmd/%/,%,$(sort $(dir $(wildcard cmd/*/main.go))))
FUZZTIME ?= 3s
TEST_TIMEOUT ?= 25m
BINDIR ?= bin

.PHONY: help build release cross test test-short lint fuzz bench deps up down up-local down-local natmatrix images clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

build: ## static binaries into bin/ (CGO_ENABLED=0, version stamped; BINDIR=dir for elsewhere)
	@mkdir -p $(BINDIR)
	@for c in $(CMDS); do echo "build $(BINDIR)/$$c"; \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINDIR)/$$c ./cmd/$$c || exit 1; done

release: ## agent for linux, macOS, Windows + servers for linux (amd64, arm64), SHA256SUMS, into dist/
	VERSION=$(VERSION) scripts/release.sh

cross: ## go vet + build the agent for every release OS/arch, the servers for linux
	scripts/cross.sh

test: ## everything: unit, NAT lab, interop, compose (when Docker is present), brief fuzzing
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd test/deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -race ./pkg/mqttbroker/ ./cmd/mqttd/
	cd third_party/mochi && $(GO) vet ./... && $(GO) test -count=1 -race -p 1 ./...
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

test-short: ## the tests that need no root and no third-party tools
	$(GO) test -short -count=1 ./...

lint: ## gofmt, go vet, staticcheck, cross-target vet/build (scripts/cross.sh)
	@out=$$(gofmt -l .); if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || { echo "staticcheck missing: run make deps"; exit 1; }
	staticcheck ./...
	cd test/deploy && $(GO) vet ./... && staticcheck ./...
	scripts/cross.sh

fuzz: ## run every fuzz target for FUZZTIME (default 3s)
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench: ## benchmarks, ours beside the third-party servers (see docs/benchmarks.md)
	scripts/bench.sh

deps: ## install Debian packages and Go tools the tests need (idempotent)
	scripts/deps.sh

up: ## the private stack in Docker (stund, turnd, mqttd, Prometheus, Grafana, three demo agents)
	VERSION=$(VERSION) scripts/compose.sh up

down: ## remove what `make up` started (docker compose down -v)
	scripts/compose.sh down

up-local: ## the stack as local processes on loopback, without Docker (logs in run/)
	scripts/stack.sh up

down-local: ## stop what `make up-local` started
	scripts/stack.sh down

NATMATRIX_ATTEMPTS ?= 5
natmatrix: ## connect agents across all 49 NAT pairs in the lab; writes docs/nat-matrix.md (root)
	P2PD_NATMATRIX=full P2PD_NATMATRIX_ATTEMPTS=$(NATMATRIX_ATTEMPTS) $(GO) test -count=1 -v -timeout 90m -run '^TestNATMatrix$$' ./internal/natmatrix/

images: ## build the FROM-scratch Docker images p2pd/<program>:VERSION (and :latest)
	LATEST=1 scripts/images.sh $(VERSION)

clean:
	rm -rf bin dist
