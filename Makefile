# The two commands a new user needs (see README):
#   make lab    build/boot the local lab and apply the `lab` stack to it, then audit every hop
#   make test   run the whole test suite (unit, mocks, lab)
# Everything is installed from scratch (apt + a venv), so a fresh machine works.
SHELL := /bin/bash
VENV  := venv
PY    := $(VENV)/bin/python
STACK ?= lab
# Everything the tests use on this machine itself: the lab's tools, and the real servers the unit
# tests start privately on loopback (MariaDB, PostgreSQL, sshd, nginx); shellcheck checks every
# .sh file and every script the program renders (`make lint`). A test that skips fails `make test`.
APT_PACKAGES := debootstrap systemd-container iproute2 iptables openssh-client openssh-server curl openssl \
  tcpdump ruby nginx-light systemd mariadb-server postgresql util-linux jq shellcheck

.PHONY: lab test setup deps lab-up lab-down destroy preview audit bench lint

setup: deps $(VENV)/.installed

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

lab: setup
	$(PY) -m lab.hosts up
	$(PY) -m lab.replay up --stack $(STACK)
	$(PY) -m tools.audit --stack $(STACK) --capture mmtls-br0

preview: setup
	$(PY) -m lab.replay preview --stack $(STACK)

audit: setup
	$(PY) -m tools.audit --stack $(STACK)

destroy: setup
	$(PY) -m lab.replay destroy --stack $(STACK)

lab-down: setup
	$(PY) -m lab.hosts down

# ruff, mypy, and shellcheck: every .sh file in components/ (tests/unit/test_shellcheck.py) and
# every script the stacks render, with the allowances and their reasons in tests/helpers/scripts.py
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_shellcheck.py tests/program/test_shellcheck_rendered.py

# The lab layer (tests/lab, about 40 min, mostly waiting on its hosts) and the others (about 3.5
# min of CPU) run side by side; the others at a lower priority, so the lab's timing is its own.
# Each is one pytest session (its own skip check: tests/conftest.py); the others' report prints
# after the lab's, and either failing fails the run.
test: lint
	@quick=$$(mktemp); trap 'kill $$pid 2>/dev/null; rm -f "$$quick"' EXIT; \
	nice -n 10 $(PY) -m pytest tests/unit tests/program tests/replay > "$$quick" 2>&1 & pid=$$!; \
	$(PY) -m pytest tests/lab; lab=$$?; \
	wait $$pid; others=$$?; pid=; cat "$$quick"; \
	echo "pytest: tests/lab exit $$lab, tests/unit tests/program tests/replay exit $$others"; \
	[ $$lab -eq 0 ] && [ $$others -eq 0 ]

bench: setup
	$(PY) bench/run.py

# The replay engine's other commands (preview, destroy and audit are above).
.PHONY: up outputs
up: setup
	$(PY) -m lab.replay up --stack $(STACK)

outputs: setup
	$(PY) -m lab.replay outputs --stack $(STACK)
