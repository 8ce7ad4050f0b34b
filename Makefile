# The two commands of README.md. Both do all set-up on a fresh machine (Go-built control plane,
# Debian packages, Rust crates), caching under ~/.cache/fledge so later runs are fast.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/fledge/target
export CARGO_TERM_COLOR ?= never
# Where `make install` puts fledge and its kubectl plugin name.
PREFIX ?= $(HOME)/.local

.PHONY: demo test env-up env-down image install
demo: ## Run fledge's main job on the local control plane
	@tests/env/demo

test: ## Build the env if needed, start it, run the whole test suite, stop it
	@tests/env/test

env-up:
	@tests/env/up
env-down:
	@tests/env/down

image: ## Build the OCI image fledge:<version> with buildah (no registry needed)
	@tests/env/deps
	cargo build --release --locked --bin fledge
	@tests/env/image --binary "$(CARGO_TARGET_DIR)/release/fledge"

install: ## Install fledge and the kubectl plugin link kubectl-fledge into $(PREFIX)/bin
	cargo build --release --locked --bin fledge
	@tests/env/install --binary "$(CARGO_TARGET_DIR)/release/fledge" --prefix "$(PREFIX)"
