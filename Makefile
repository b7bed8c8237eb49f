# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := python3 -m uv
# Debian packages the tests and the local host use: command that proves each is there -> package.
DEBIAN_NEEDS := rsync:rsync /usr/sbin/sshd:openssh-server chromium:chromium wrk:wrk sqlite3:sqlite3 crontab:cron

.PHONY: run stop dev test test-fast install debian-packages lint format bench clean lock

install: $(VENV)/.installed

$(VENV)/.installed: setup.py requirements-dev.lock
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	@test -x $(PY) || $(UV) venv --quiet --python python3 $(VENV)
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.lock -e .
	@touch $@

# requirements.lock is what a release installs on a server; -dev adds the test tools.
# Locks change only when asked (`make lock`), never as a side effect of a fresh checkout's times.
lock:
	$(UV) pip compile --quiet setup.py -o requirements.lock
	$(UV) pip compile --quiet --extra test --constraint requirements.lock setup.py -o requirements-dev.lock

debian-packages:
	@missing=""; for need in $(DEBIAN_NEEDS); do \
	  cmd=$${need%%:*}; pkg=$${need#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The local hosting environment: host (panel, router, mail sink) and the checkout as staging.
run: debian-packages install
	$(PY) -m deploy.flows.local_env up

stop: install
	$(PY) -m deploy.flows.local_env down

# The site alone in the foreground, without the host: quick template work.
dev: install
	$(PY) -m app.scripts.devserver

# Two test modules at a time (pytest-xdist, a module to a worker): most of the suite waits on
# real processes starting, copying and stopping, so two cores take two modules.
TEST_WORKERS ?= 2

test: debian-packages install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# The quick loop while editing: tests that start no process (tests/unit), in seconds.
test-fast: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: debian-packages install
	$(PY) bench/site.py

clean:
	rm -rf $(VENV) var *.egg-info
