# swarmcard — the two commands a fresh machine needs:
#   make demo   set everything up and run the main job on the built-in demo base image
#   make test   set everything up and pass the whole suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

# tool:Debian package — what swarmcard runs (see builder/exec/tools.ts).
SYSTEM_TOOLS := mcopy:mtools mtype:mtools debugfs:e2fsprogs mkfs.ext4:e2fsprogs sfdisk:fdisk \
                mkfs.vfat:dosfstools xz:xz-utils zstd:zstd unzip:unzip gzip:gzip losetup:mount
SYSTEM_TOOLS += ssh-keygen:openssh-client lsblk:util-linux
# Only the test suite needs these: fixtures, independent readers, and the swarm end-to-end test
# (one Docker engine and one sshd per node, in network namespaces; docker-registry stands in for the
# registry:2 image no registry here can serve; openssl checks password hashes and Wi-Fi keys;
# bmaptool flashes images with their .bmap onto a loop device standing for a used card, makes the
# flash tests' bmaps and is the flash benchmark's reference; bsdcat (libarchive, what Raspberry Pi
# Imager decodes with) and Python's lzma module read the compressed node images back; script(1)
# gives the confirmation test a terminal; mmdebstrap makes the builder image's base, debian:trixie-slim,
# from Debian packages when the test engine lacks it (no registry can serve it here).
TEST_TOOLS := zip:zip fsck.vfat:dosfstools shellcheck:shellcheck dockerd:docker.io sshd:openssh-server \
              ip:iproute2 busybox:busybox-static curl:curl nsenter:util-linux docker-registry:docker-registry \
              openssl:openssl bmaptool:bmap-tools bsdcat:libarchive-tools python3:python3 script:bsdutils \
              mmdebstrap:mmdebstrap
# The boot proof (docs/boot-proof.md) builds its arm64 base under qemu-user (binfmt-support registers
# it; arch-test lets mmdebstrap check it) and boots the node images under qemu-system-aarch64.
BOOT_TOOLS := qemu-system-aarch64:qemu-system-arm qemu-aarch64-static:qemu-user-static \
              update-binfmts:binfmt-support arch-test:arch-test

.PHONY: help setup system-deps test-deps node-deps build demo test boot-proof lint fmt bench clean \
        action-cache-key action-build action-merge release-shards

help:
	@echo "make demo    set up and build a demo node image from the built-in base"
	@echo "make test    set up and run the whole test suite"
	@echo "make bench   run the benchmarks under bench/ (prints ratios)"
	@echo "make boot-proof  only boot a built cluster as emulated Pis (~8 min, +7 the first time)"
	@echo "make fmt     format and fix lint findings in place"

# Install missing Debian packages: directly as root, through sudo when it needs no password,
# otherwise stop with the exact command to run.
define install_missing
	@missing=""; \
	for pair in $(1); do \
	  tool=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || [ -x /sbin/$$tool ] || \
	    case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "error: missing programs from:$$missing — install them with your package manager, or use a Debian machine." >&2; exit 1; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    echo "installing with sudo:$$missing"; \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "error: missing Debian packages; run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi
endef

system-deps:
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("error: swarmcard needs Node.js 20.19 or newer, this is "+process.version); process.exit(1) }'
	$(call install_missing,$(SYSTEM_TOOLS))

test-deps: system-deps
	$(call install_missing,$(TEST_TOOLS) $(BOOT_TOOLS))

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node-deps: node_modules/.package-lock.json

# From scratch: tsc never deletes the output of a source file that was removed.
build: node-deps
	rm -rf build
	npx tsc -p tsconfig.json
	chmod +x build/builder/cli.js

setup: system-deps build

demo: setup
	build/builder/cli.js demo --out dist

# Format and lint in check mode (Biome); `make fmt` fixes what it can.
lint: node-deps
	npx biome ci --reporter=summary builder test bench
	@# The GitHub Action and the release workflow, against GitHub's schemas (one file per call).
	npx action-validator action.yml
	npx action-validator .github/workflows/release.yml
	@long=$$(find builder test bench -name '*.ts' -exec awk 'length > 120 { print FILENAME ":" FNR }' {} +); \
	if [ -n "$$long" ]; then echo "error: lines over 120 characters (wrap them):" $$long >&2; exit 1; fi

fmt: node-deps
	npx biome check --write builder test bench

# Ctrl-C: the suite's temp directory goes (the boot proof alone leaves 9 GiB of images there), once
# ava has stopped; never through a mount (--one-file-system).
REMOVE_SUITE_ON_INTERRUPT = trap 'rm -rf --one-file-system -- "$$suite"; exit 130' INT TERM

# The leak check (test/leaks.ts) snapshots before the suite and compares after it, also when a
# test failed: make test fails, naming each process, namespace, mount, loop device or temp entry left.
# The suite gets a temp directory of its own (TMPDIR), so what is left in it is the suite's; the
# fixture images stay cached in the system temp directory between runs. The boot proof runs last and
# alone (docs/boot-proof.md): its emulated Pis need both cores, and would slow every other test.
SUITE_FILES = $(filter-out build/test/boot-proof.test.js,$(wildcard build/test/*.test.js))
RUN_SUITE = SWARMCARD_TEST_FIXTURES="$${TMPDIR:-/tmp}" TMPDIR="$$suite"
test: test-deps build lint
	node build/test/leaks.js snapshot build/leaks-before.json
	suite=$$(mktemp -d "$${TMPDIR:-/tmp}/swarmcard-suite-XXXXXX"); $(REMOVE_SUITE_ON_INTERRUPT); \
	$(RUN_SUITE) npx ava $(SUITE_FILES); status=$$?; \
	$(RUN_SUITE) SWARMCARD_BOOT_PROOF=1 npx ava build/test/boot-proof.test.js || status=1; \
	node build/test/leaks.js compare build/leaks-before.json "$$suite" || status=1; exit $$status

# The boot proof alone, with the same leak check.
boot-proof: test-deps build
	node build/test/leaks.js snapshot build/leaks-before.json
	suite=$$(mktemp -d "$${TMPDIR:-/tmp}/swarmcard-suite-XXXXXX"); $(REMOVE_SUITE_ON_INTERRUPT); \
	$(RUN_SUITE) SWARMCARD_BOOT_PROOF=1 npx ava --verbose build/test/boot-proof.test.js; status=$$?; \
	node build/test/leaks.js compare build/leaks-before.json "$$suite" || status=1; exit $$status

# The GitHub Action's steps (action.yml runs them; test/ci-files.test.ts runs them the same way):
# `make -C ACTION_DIR action-…` with the caller's checkout as GITHUB_WORKSPACE and the action's inputs
# as INPUT_PROFILE, INPUT_BASE, INPUT_NODES, INPUT_ONLY, INPUT_COMPRESS (space-separated),
# INPUT_RELEASE_URL, INPUT_OUT, INPUT_SHARD, INPUT_SECRETS (written 0600 into SECRETS_DIR, never
# echoed), INPUT_MERGE. They reach the CLI as shell variables, never through make's own
# expansion, so a path holding quotes or $ stays a path. Results go to $GITHUB_OUTPUT.
CLI := $(CURDIR)/build/builder/cli.js

# Compiled once (the action's fresh checkout); never wiped while a test suite runs from build/.
# tsc writes its output even when it fails: a failed compile leaves no cli.js to pass for a good one.
build/builder/cli.js: | node-deps
	npx tsc -p tsconfig.json || { rm -f $@; exit 1; }
	chmod +x $@
ACTION_OUTPUTS := node $(CURDIR)/build/builder/docker/action-outputs.js

action-cache-key: build/builder/cli.js
	@set -euo pipefail; cd "$${GITHUB_WORKSPACE:?}"; \
	args=(plan "$${INPUT_PROFILE:?}" --json); \
	if [ -n "$${INPUT_NODES:-}" ]; then args+=(--nodes "$$INPUT_NODES"); fi; \
	$(CLI) "$${args[@]}" | BASE="$${INPUT_BASE:-}" $(ACTION_OUTPUTS) cache-key >> "$${GITHUB_OUTPUT:?}"

action-build: build/builder/cli.js
	@set -euo pipefail; cd "$${GITHUB_WORKSPACE:?}"; \
	args=(build "$${INPUT_PROFILE:?}" --in-docker --json --out "$${INPUT_OUT:-dist}"); \
	if [ -n "$${INPUT_BASE:-}" ]; then args+=(--base "$$INPUT_BASE"); fi; \
	if [ -n "$${INPUT_NODES:-}" ]; then args+=(--nodes "$$INPUT_NODES"); fi; \
	if [ -n "$${INPUT_ONLY:-}" ]; then args+=(--only "$$INPUT_ONLY"); fi; \
	for c in $${INPUT_COMPRESS:-}; do args+=(--compress "$$c"); done; \
	if [ -n "$${INPUT_RELEASE_URL:-}" ]; then args+=(--release-url "$$INPUT_RELEASE_URL"); fi; \
	if [ -n "$${INPUT_SHARD:-}" ]; then args+=(--shard "$$INPUT_SHARD"); fi; \
	if [ -n "$${INPUT_SECRETS:-}" ]; then \
	  export SWARMCARD_SECRETS_DIR="$${SECRETS_DIR:?}"; \
	  $(CLI) plan "$$INPUT_PROFILE" --json | $(ACTION_OUTPUTS) secrets-file "$$SWARMCARD_SECRETS_DIR"; \
	fi; \
	$(CLI) "$${args[@]}" | $(ACTION_OUTPUTS) outputs "$${INPUT_OUT:-dist}" >> "$${GITHUB_OUTPUT:?}"

# The shard folders as download-artifact leaves them (INPUT_MERGE/<artifact>/) → INPUT_OUT/<cluster>.
action-merge: build/builder/cli.js
	@set -euo pipefail; cd "$${GITHUB_WORKSPACE:?}"; \
	shopt -s nullglob; shards=("$${INPUT_MERGE:?}"/*/); \
	if [ $${#shards[@]} = 0 ]; then echo "error: $$INPUT_MERGE holds no shard folders to merge." >&2; exit 1; fi; \
	$(CLI) merge "$${shards[@]}" --out "$${INPUT_OUT:-dist}" --json \
	  | $(ACTION_OUTPUTS) outputs "$${INPUT_OUT:-dist}" >> "$${GITHUB_OUTPUT:?}"

# The release workflow's matrix: SHARDS (1 = one build job) → count=N and list=["1/N",…,"N/N"].
release-shards: build/builder/cli.js
	@$(ACTION_OUTPUTS) shard-list "$${SHARDS:-1}" < /dev/null >> "$${GITHUB_OUTPUT:?}"

bench: setup
	node build/bench/clone-edit.js
	node build/bench/build-cluster.js
	node build/bench/compress.js
	node build/bench/shards.js
	@if [ "$$(id -u)" = 0 ] && command -v bmaptool >/dev/null; then node build/bench/flash.js; \
	else echo "skipping bench/flash.js: it needs root (a loop device) and bmaptool (apt-get install bmap-tools)"; fi

clean:
	rm -rf build dist
