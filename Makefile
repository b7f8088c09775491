# The commands a newcomer types and CI runs. See README.md.

CARGO ?= cargo
DEMO_DIR ?= $(CURDIR)/.demo
BENCH_AGENTS ?= 10000
BENCH_METRICS_NODES ?= 10000
IMAGE_SPEC ?= image/specs/node.toml
export COLOC_CACHE ?= /var/cache/coloc
# The agent that goes into node images: release, stripped, its own target
# directory, and build paths remapped so that the binary does not depend on
# where the tree is checked out (reproducible images).
IMAGE_TARGET := $(CURDIR)/target/image
IMAGE_AGENT := $(IMAGE_TARGET)/release/coloc-agent
IMAGE_BUILDER := $(CURDIR)/target/debug/coloc-image

.PHONY: all deps build demo demo-down test test-fast test-vm lint bench bench-metrics clean \
	image image-agent image-verify

all: build

deps:
	@tools/install-deps

build: deps
	$(CARGO) build --workspace --all-targets

# The main job on a fresh machine: build the node image, start colocd,
# boot two nodes in QEMU with their seeds, wait until both are ready, then
# `coloc node list`.
demo: deps image
	$(CARGO) build --release -p coloc-controller -p coloc-cli -p coloc-tests --bins
	DEMO_DIR=$(DEMO_DIR) IMAGE=$(CURDIR)/target/node.img COLOC_IMAGE_BIN=$(IMAGE_BUILDER) tools/demo up

demo-down:
	DEMO_DIR=$(DEMO_DIR) tools/demo down

# Everything CI checks: formatting, clippy with -D warnings, every test,
# then the end-to-end tests that boot the real image in QEMU.
test: deps lint
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) test-vm

# End-to-end tests in QEMU (TCG here): build or reuse the image, boot it.
test-vm: image
	COLOC_TEST_IMAGE=$(CURDIR)/target/node.img COLOC_IMAGE_BIN=$(IMAGE_BUILDER) \
		$(CARGO) test -p coloc-tests --test e2e_boot --test e2e_storage --test e2e_apps --test e2e_health -- --ignored --test-threads=1

image-agent: deps
	CARGO_TARGET_DIR=$(IMAGE_TARGET) \
	RUSTFLAGS="--remap-path-prefix=$(CURDIR)=/usr/src/coloc --remap-path-prefix=$(HOME)/.cargo=/usr/src/cargo" \
	CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true \
		$(CARGO) build --release -p coloc-agent

# The node image for the current sources, cached by input hash under
# $(COLOC_CACHE)/images; target/node.img points at it.
image: image-agent
	$(CARGO) build -p coloc-image
	tools/image-cached $(IMAGE_BUILDER) $(IMAGE_SPEC) $(IMAGE_AGENT)

# Two builds in different directories must give the same sha256.
image-verify: image-agent
	$(CARGO) build -p coloc-image
	COLOC_IMAGE=$(IMAGE_BUILDER) COLOC_AGENT=$(IMAGE_AGENT) tools/image-verify $(IMAGE_SPEC)

# Unit tests only (seconds), for the edit-compile loop.
test-fast:
	$(CARGO) test --workspace --lib --bins

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Fleet benchmark (BENCH_AGENTS simulated agents against one colocd), then
# node boot time against a plain Debian baseline, volumes, apps, then the
# /metrics render; all printed as Markdown.
bench: deps image
	$(CARGO) build --release -p coloc-controller -p coloc-tests --bins
	tools/bench-fleet $(BENCH_AGENTS)
	target/release/coloc-bench-boot --image $(CURDIR)/target/node.img --coloc-image $(IMAGE_BUILDER)
	target/release/coloc-bench-volumes --image $(CURDIR)/target/node.img --coloc-image $(IMAGE_BUILDER)
	target/release/coloc-bench-apps --image $(CURDIR)/target/node.img --coloc-image $(IMAGE_BUILDER)
	target/release/coloc-bench-agent --image $(CURDIR)/target/node.img --coloc-image $(IMAGE_BUILDER)
	$(MAKE) bench-metrics

# colocd's /metrics rendered for BENCH_METRICS_NODES synthetic nodes (4
# disks, 1 pool, 5 volumes, 2 apps each): median time and peak RSS.
bench-metrics: deps
	$(CARGO) bench -p coloc-controller --bench metrics_render -- $(BENCH_METRICS_NODES)

clean:
	$(CARGO) clean
	rm -rf $(DEMO_DIR)
