# The README's two commands live here: `make demo` and `make test`.
# Both create .venv, install edgeship with what they need, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RESULTS ?= results

.PHONY: demo test install system-deps device-install-check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Debian packages that tests and the demo use (real data, real tools); installed only when missing.
system-deps:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	    || echo "warning: could not install$$missing (tests that need them will be skipped)"; \
	fi

SYSTEM_PACKAGES ?= prometheus dataset-fashion-mnist

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e '.[all]'
	touch $@

install: system-deps $(VENV)/.installed

demo: install
	$(VENV)/bin/edgeship demo --out $(RESULTS)

test: install
	$(PY) -m pytest -q -ra

# The device side installs and imports without torch (what a Raspberry Pi gets).
device-install-check:
	rm -rf .venv-device
	$(PYTHON) -m venv .venv-device
	.venv-device/bin/pip install -q .
	.venv-device/bin/python tests/check_device_install.py
	rm -rf .venv-device

bench: install
	$(PY) bench/spine.py

clean:
	rm -rf $(VENV) .venv-device build src/*.egg-info .pytest_cache $(RESULTS)
