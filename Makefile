# Redlake: `make run` starts the whole platform on the embedded defaults; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-faults bench install lint typecheck clean nightly slither

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import django, celery, pyarrow" # fail loudly if the install did not complete
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

contracts/out/.built: node_modules/.installed contracts/foundry.toml $(wildcard contracts/src/*.sol)
	bash contracts/forge.sh build --quiet
	touch $@

# The portal (frontend/: React + TypeScript, built by Vite into frontend/dist, served by Django).
# Its ABIs module is generated from contracts/out, so it builds after the contracts.
frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

frontend/dist/index.html: frontend/node_modules/.installed contracts/out/.built frontend/index.html frontend/vite.config.ts \
		$(shell find frontend/src frontend/scripts -type f -not -path '*/generated/*' 2>/dev/null)
	cd frontend && npm run --silent build
	touch $@

install: $(VENV)/.installed node_modules/.installed contracts/out/.built frontend/dist/index.html

run: install
	@bash scripts/run.sh

test: install
	@bash scripts/test.sh

# The fault suite (tests/faults) on its own PostgreSQL cluster and redis-server, which it restarts.
# It needs the venv, anvil and the contracts, not the portal's build.
test-faults: $(VENV)/.installed node_modules/.installed contracts/out/.built
	@bash scripts/test-faults.sh

bench: install
	@bash scripts/bench.sh

# The contracts' invariant suites at >= 100,000 calls each (foundry.toml's nightly profile; ~3 min).
nightly: install
	cd contracts && FOUNDRY_PROFILE=nightly bash forge.sh test --match-contract Invariant

# Slither on the forge build; fails on a high or medium finding not explained in contracts/SECURITY.md.
slither: install
	@bash scripts/slither.sh

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .venv-tools node_modules var contracts/out contracts/cache contracts/out-slither contracts/cache-slither contracts/node_modules frontend/node_modules frontend/dist frontend/src/generated
