# Two commands on a fresh machine: `make run` (the demo) and `make test` (the whole suite).
# Each does its own set-up, idempotently: Debian packages, the virtual environment, the Kafka jars.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEBS   := g++ make pkg-config openjdk-17-jre-headless maven \
          libavcodec-dev libavformat-dev libavdevice-dev libavfilter-dev libswscale-dev libswresample-dev libavutil-dev \
          chromium wrk

.PHONY: run test setup system-deps kafka-jars bench clean

run: setup
	$(PY) -m pipeline up --demo

test: setup
	$(PY) -m pytest

setup: system-deps $(STAMP) kafka-jars

# Build tools for the packages that compile from source (pdqhash; vpdq against FFmpeg),
# Java and Maven for the broker; Chromium for the browser tests of the web UI; wrk for `hmas bench api`.
system-deps:
	@missing=""; \
	for tool in g++ pkg-config java mvn chromium wrk; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	pkg-config --exists libavcodec libavformat libswscale 2>/dev/null || missing="$$missing ffmpeg-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $(DEBS); \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e '.[dev,video]'
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(PY) -m pipeline kafka jars

bench: setup
	$(PY) -m pipeline bench index --n 1000000

clean:
	-$(PY) -m pipeline kafka stop
	rm -rf $(VENV) .hmas ops/kafka/lib
