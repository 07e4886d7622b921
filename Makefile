# Two entry points a fresh machine needs: `make run` and `make test`.
# Both create .venv and install into it exactly what CI tested (requirements.lock,
# hashed), then the package itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# make run PORT=3005 (PORT=0: a free port, shown on the first line)
PORT ?= 3002

.PHONY: run test lint bench lock clean browser nginx

# (setuptools warns on every editable install, whatever its mode, "be careful with
# folders ... with the same name as your package": nothing a user can act on, so the
# last install runs with PYTHONWARNINGS=ignore.)
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Silent (@): sim's first line is the URL (with PORT=0, the only place the port is
# said), and make's echo of the command would come before it.
run: $(STAMP)
	@$(BIN)/sim run scenarios/energy-dashboard.toml --port $(PORT)

# The inspector's browser tests need Chromium and its WebDriver (Debian packages); as
# root on Debian they are installed where missing, elsewhere the tests say how (and skip,
# except in CI, where CI=true makes them fail).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "make: chromium and chromium-driver are missing: the browser tests will not run"; fi

# The scale-out test runs nginx (docs/examples/nginx-scale-out.conf): as root on Debian it
# is installed where missing; elsewhere the test says how (and skips, except in CI, where
# CI=true makes it fail).
nginx:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx; \
	else echo "make: nginx is missing: the scale-out test will not run"; fi

test: $(STAMP) browser nginx
	$(BIN)/ruff check simulator tests bench recordings
	$(BIN)/ruff format --check simulator tests bench recordings
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check simulator tests bench recordings
	$(BIN)/ruff format --check simulator tests bench recordings
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/generate_throughput.py

# Pin the dependencies again (after a change to pyproject.toml), for every platform
# and Python the project supports; commit the result with the change.
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --universal \
		--python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info
