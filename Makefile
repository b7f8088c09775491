# The commands a newcomer types and CI runs. See README.md.

CARGO ?= cargo
DEMO_DIR ?= $(CURDIR)/.demo
BENCH_AGENTS ?= 10000

.PHONY: all deps build demo demo-down test test-fast lint bench clean

all: build

deps:
	@tools/install-deps

build: deps
	$(CARGO) build --workspace --all-targets

# The main job on a fresh machine: a controller and a few simulated nodes
# (real agent logic over in-memory hosts), then `coloc node list`.
demo: deps
	$(CARGO) build --release -p coloc-controller -p coloc-cli -p coloc-tests --bins
	DEMO_DIR=$(DEMO_DIR) tools/demo up

demo-down:
	DEMO_DIR=$(DEMO_DIR) tools/demo down

# Everything CI checks: formatting, clippy with -D warnings, every test.
test: deps lint
	$(CARGO) test --workspace --no-fail-fast

# Unit tests only (seconds), for the edit-compile loop.
test-fast:
	$(CARGO) test --workspace --lib --bins

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Fleet benchmark: BENCH_AGENTS simulated agents against one colocd.
bench: deps
	$(CARGO) build --release -p coloc-controller -p coloc-tests --bins
	tools/bench-fleet $(BENCH_AGENTS)

clean:
	$(CARGO) clean
	rm -rf $(DEMO_DIR)
