# docker notarize — run `make help` for the targets.

SHELL       := /usr/bin/env bash
GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BIN         := $(CURDIR)/bin
DOCKER_CONFIG ?= $(HOME)/.docker
PLUGIN_DIR  := $(DOCKER_CONFIG)/cli-plugins
DATA        ?= $(CURDIR)/.notarize
LEDGER_ADDR ?= 127.0.0.1:7070
PROXY_ADDR  ?= 127.0.0.1:5000
TEST_FLAGS  ?= -race -count=1 -timeout 15m
# A race-enabled process that exits 0 sleeps a second first (the race
# runtime's atexit_sleep_ms, 1000 by default, lets other threads finish a
# report; a Go program's reports are written as they are found). Every test
# binary does, and so does every race-enabled helper the tests run: the
# plugin's KMS helper is its test binary, run once per KMS operation (the
# plugin's tests: 212 s with the sleep, 194 s without, one run each).
export GORACE ?= atexit_sleep_ms=0
# go vet type-checks against its dependencies' compiled export data. In the
# race configuration the tests build, those are the tests' own compiled
# packages; in the default one a fresh machine compiled all ~1,600 packages
# a second time just for vet (416 s of 2 cores). Only the race-tagged test
# files differ (ledger/race_on_test.go is vetted, race_off_test.go is not).
VET_FLAGS   ?= -race
MODULE      := github.com/notarize/docker-notarize
BENCH       ?= .

export GOTOOLCHAIN ?= local

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
# The ledger, the proxy and the KMS helper need no cgo: they are built
# without it, static, as examples/Dockerfile builds the ledger and the proxy.
# Built alike, they share their compiled packages with the image's build (a
# fresh 2-core machine compiled ~570 packages a second time, ~2.5 min); the
# KMS helper shares most of theirs. The full CLI (notarize-cli) keeps
# cgo, for PKCS#11 modules (--key pkcs11:…). The tests that build commands
# (e2e, cmd/notarize-kms) build them the same way.
NOCGO_CMDS  := notarize-ledger notarize-proxy notarize-kms

# The plugin is two builds of ./cmd/docker-notarize (issue 14):
# docker-notarize, the verify-only build (tag notarize_verifyonly, static: a
# binary that loads the C library starts ~2 ms later), which answers the
# docker CLI and runs verify itself; and notarize-cli, the full CLI (cgo:
# PKCS#11 modules, the system's resolver), which it executes for every other
# command, and for a verify on a system whose name service switch needs the
# C library (plugin.NeedsSystemResolver). `go install ./cmd/docker-notarize` gives the full CLI alone,
# which works as the plugin too.
build: ## Build docker-notarize (and notarize-cli, the full CLI behind it), notarize-kms, notarize-ledger and notarize-proxy into ./bin.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(NOCGO_CMDS))
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -tags notarize_verifyonly -o $(BIN)/docker-notarize ./cmd/docker-notarize
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/notarize-cli ./cmd/docker-notarize

.PHONY: install
install: build ## Install the plugin, the full CLI behind it and the KMS helper into DOCKER_CONFIG/cli-plugins (default ~/.docker; then: docker notarize --help).
	@mkdir -p $(PLUGIN_DIR)
	install -m 0755 $(BIN)/notarize-cli $(PLUGIN_DIR)/notarize-cli
	install -m 0755 $(BIN)/notarize-kms $(PLUGIN_DIR)/notarize-kms
	install -m 0755 $(BIN)/docker-notarize $(PLUGIN_DIR)/docker-notarize
	@echo "installed $(PLUGIN_DIR)/docker-notarize, the full CLI $(PLUGIN_DIR)/notarize-cli behind it, and the KMS helper $(PLUGIN_DIR)/notarize-kms"

.PHONY: man
man: ## Generate the man pages of docker-notarize (docker-notarize(1), docker-notarize-sign(1), …) into ./man (MANDIR).
	$(GO) run -ldflags '-X main.version=$(VERSION)' ./cmd/docker-notarize/mangen.go $(or $(MANDIR),$(CURDIR)/man)

.PHONY: run
run: build ## Start the ledger (127.0.0.1:7070) and the proxy (127.0.0.1:5000) in the foreground (Ctrl-C or `make stop` stops them); data in ./.notarize.
	@BIN=$(BIN) DATA=$(DATA) LEDGER_ADDR=$(LEDGER_ADDR) PROXY_ADDR=$(PROXY_ADDR) PROXY_FLAGS='$(PROXY_FLAGS)' WITNESSES=$(or $(WITNESSES),0) scripts/run-stack.sh

.PHONY: run-witnessed
run-witnessed: build ## `make run` with WITNESSES (default 3) local omniwitness processes cosigning every checkpoint (2 of 3).
	@BIN=$(BIN) DATA=$(DATA) LEDGER_ADDR=$(LEDGER_ADDR) PROXY_ADDR=$(PROXY_ADDR) PROXY_FLAGS='$(PROXY_FLAGS)' WITNESSES=$(or $(WITNESSES),3) scripts/run-stack.sh

.PHONY: run-fleet
run-fleet: build ## `make run` plus a second proxy (127.0.0.1:5001), both caching blobs in one S3 bucket on a local S3 server, versitygw (127.0.0.1:8333); REDIRECT=1: the second redirects to presigned URLs.
	@BIN=$(BIN) DATA=$(DATA) LEDGER_ADDR=$(LEDGER_ADDR) PROXY_ADDR=$(PROXY_ADDR) PROXY_FLAGS='$(PROXY_FLAGS)' REDIRECT=$(or $(REDIRECT),0) scripts/run-fleet.sh

.PHONY: mariadb
mariadb: ## Start a throwaway MariaDB on 127.0.0.1:3307 (data in .notarize/mariadb); prints its DSN.
	scripts/mariadb.sh start $(DATA)/mariadb 3307

.PHONY: run-mysql
run-mysql: build ## `make run` with the ledger on a throwaway MariaDB (127.0.0.1:3307, stopped with the rest; key in .notarize/ledger-mysql.key).
	@BIN=$(BIN) DATA=$(DATA) LEDGER_ADDR=$(LEDGER_ADDR) PROXY_ADDR=$(PROXY_ADDR) PROXY_FLAGS='$(PROXY_FLAGS)' WITNESSES=$(or $(WITNESSES),0) STORAGE=mysql scripts/run-stack.sh

.PHONY: stop
stop: ## Stop what `make run`, `run-mysql` or `run-witnessed` of this checkout started (pid files in .notarize/run).
	@DATA=$(DATA) scripts/stop-stack.sh

.PHONY: test
# The longest test packages, started first: go test runs packages in the
# order given, -p (one per core) at a time, and one of them started last
# was the whole suite's tail (ledger, 400-500 s, at the end of a 16-minute
# run whose cores were idle for its last minutes).
SLOW_TESTS := ledger proxy e2e ledgerclient proxy/blobcache
# The plugin's tests (the docker CLI and the KMS helper as processes, index
# holds, lost-receipt looks; their fixture keys decrypted once, see
# plugin/kms_main_test.go) run beside the other packages rather than after
# them; their output follows the others'. So do the tests of the plugin's
# verify-only build (VERIFYONLY: its main, with the tag make build gives it).
VERIFYONLY  := -tags notarize_verifyonly ./cmd/docker-notarize
test: ## Run the whole test suite (race detector on).
	$(GO) vet $(VET_FLAGS) ./...
	$(GO) vet $(VET_FLAGS) $(VERIFYONLY)
	@plugin_log=$$(mktemp); \
	{ $(GO) test $(TEST_FLAGS) ./plugin/... && $(GO) test $(TEST_FLAGS) $(VERIFYONLY); } >"$$plugin_log" 2>&1 & plugin_pid=$$!; \
	$(GO) test $(TEST_FLAGS) $(addprefix $(MODULE)/,$(SLOW_TESTS)) \
		$$($(GO) list ./... | grep -vx -e '$(MODULE)/plugin.*' $(foreach p,$(SLOW_TESTS),-e '$(MODULE)/$(p)')); rest=$$?; \
	wait $$plugin_pid; plugin=$$?; cat "$$plugin_log"; rm -f "$$plugin_log"; \
	[ $$rest = 0 ] && [ $$plugin = 0 ]

.PHONY: e2e
e2e: ## crane, skopeo, dockerd and containerd pulling through the proxy (installs Debian packages; needs root).
	scripts/e2e-proxy.sh

.PHONY: fuzz
fuzz: ## Run each fuzzer for FUZZTIME (default 30s).
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "== $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## Run the Go benchmarks (BENCH=regexp; smaller replicas and ledgers than the published runs).
	NOTARIZE_BENCH_STATEMENTS=$${NOTARIZE_BENCH_STATEMENTS:-100000} NOTARIZE_BENCH_ENTRIES=$${NOTARIZE_BENCH_ENTRIES:-2000} \
	  $(GO) test -run XXX -bench '$(BENCH)' -benchmem -timeout 60m ./...

.PHONY: bench-ingest
bench-ingest: ## Ledger ingest benchmark: POSIX vs MariaDB, one and two instances.
	$(GO) test -run '^$$' -bench Ingest -benchtime 4000x ./ledger/

.PHONY: bench-proxy
bench-proxy: ## Proxy vs direct vs distribution's pull-through cache; replica decision cost and catch-up.
	bench/proxy-bench.sh

.PHONY: lint
lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(VET_FLAGS) ./...
	$(GO) vet $(VET_FLAGS) $(VERIFYONLY)

.PHONY: clean
clean: ## Remove ./bin (keeps ./.notarize, the ledger's data and keys).
	rm -rf $(BIN)
