# Scribe: containerd-shim-scribe-v2.
#   make demo   install what is missing, build, run a container through a private containerd
#   make test   everything: format, lint, unit tests, end-to-end on containerd 1.6, 1.7 and 2.1,
#               and the cgroup v2 + systemd VM stage (SCRIBE_SKIP_VM=1 skips it)
#   make bench  benchmarks side by side with containerd's own shims (docs/benchmarks.md)

CARGO        ?= cargo
SHIM         := target/release/containerd-shim-scribe-v2
E2E_VERSIONS ?= 1.6 1.7 2.1
E2E_THREADS  ?= 2
PREFIX       ?= /usr/local

BENCH_ARGS   ?=

.PHONY: all deps build demo test check unit e2e vm-test fetch-containerd fetch-criu install clean bench

all: build

deps:
	test/install-deps.sh

build:
	$(CARGO) build --release -p containerd-shim-scribe-v2 -p scribe-cli

demo: deps build
	$(CARGO) run --release -q -p scribe-e2e --bin scribe-demo

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p scribe-e2e --all-targets --features vm -- -D warnings

# A hung unit test fails the run after UNIT_TIMEOUT seconds instead of eating CI's whole budget.
UNIT_TIMEOUT ?= 1200
unit:
	timeout -k 10 $(UNIT_TIMEOUT) $(CARGO) test --workspace --exclude scribe-e2e

fetch-containerd:
	test/fetch-containerd.sh $(filter-out 1.6,$(E2E_VERSIONS))

# CRIU 4 from Debian sid (bookworm's 3.17 cannot dump on this kernel): checkpoint/restore e2e
fetch-criu:
	test/fetch-criu.sh

# The e2e suite runs once per containerd version; 1.6 is the system's (Debian bookworm).
e2e: build fetch-containerd fetch-criu
	test/run-e2e.sh $(E2E_VERSIONS) -- --test-threads=$(E2E_THREADS)

# A Debian bookworm VM (cgroup v2, systemd, containerd.service) under qemu running a subset of the
# e2e suite against its containerd (test/README.md); SCRIBE_SKIP_VM=1 skips it.
vm-test: build
	test/vm/run.sh

test: deps check unit e2e vm-test

# Side by side with Debian's containerd-shim-runc-v2 (and the crates.io containerd-runc-shim,
# installed into .cache on first use); rewrites the generated part of docs/benchmarks.md.
# `make bench BENCH_ARGS=--quick` is a short smoke run that leaves the page alone.
bench: build
	$(CARGO) run -q -p scribe-bench -- --md docs/benchmarks.md $(BENCH_ARGS)

install: build
	install -D -m 0755 $(SHIM) $(DESTDIR)$(PREFIX)/bin/containerd-shim-scribe-v2
	install -D -m 0755 target/release/scribe $(DESTDIR)$(PREFIX)/bin/scribe

clean:
	$(CARGO) clean
