# Two commands on a fresh machine: `make run` (the demo) and `make test` (the whole suite).
# Each does its own set-up, idempotently: Debian packages, the virtual environment, the Kafka jars.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEBS   := g++ make pkg-config openjdk-17-jre-headless maven \
          libavcodec-dev libavformat-dev libavdevice-dev libavfilter-dev libswscale-dev libswresample-dev libavutil-dev \
          chromium ffmpeg postgresql wrk

# Go-built checkers for the monitoring files and the Helm chart (tests/test_monitoring.py,
# tests/test_helm.py), built from the Go module proxy once per version and machine into
# TOOLS_CACHE, which every clone shares; a clone's .tools/bin links to them. A fresh clone (CI's)
# so builds nothing: with Go's caches warm a rebuild still relinks both, a minute or two.
TOOLS            := $(CURDIR)/.tools/bin
TOOLS_CACHE      ?= $(HOME)/.cache/hma-streams/tools
PROMTOOL_VERSION := v0.316.0
HELM_VERSION     := v3.22.0
PROMTOOL_BUILT   := $(TOOLS_CACHE)/promtool-$(PROMTOOL_VERSION)/promtool
HELM_BUILT       := $(TOOLS_CACHE)/helm-$(HELM_VERSION)/helm

.PHONY: run test setup system-deps kafka-jars tools bench clean

run: setup
	$(PY) -m pipeline up --demo

# Two processes (pytest-xdist), each with a broker of its own, a module at a time each and the
# modules marked slow first (tests/conftest.py): the suite waits on brokers, workers and browsers
# as much as it computes. TEST_PROCESSES=0 runs it in this one process.
TEST_PROCESSES ?= 2
test: setup tools
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

setup: system-deps $(STAMP) kafka-jars

# Build tools for the packages that compile from source (pdqhash; vpdq against FFmpeg),
# Java and Maven for the broker; Chromium for the browser tests of the web UI; the ffmpeg command
# for the tests' edited copies of videos; PostgreSQL's server for the tests of
# `hmas migrate from-hma` (they start a throwaway server; no Docker); wrk for `hmas bench api`.
system-deps:
	@missing=""; \
	for tool in g++ pkg-config java mvn chromium ffmpeg ffprobe wrk; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	pkg-config --exists libavcodec libavformat libswscale 2>/dev/null || missing="$$missing ffmpeg-dev"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $(DEBS); \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e '.[dev,video,migrate]'
	touch $(STAMP)

# The broker's jars, assembled from Maven Central once per pom.xml and machine into a folder of
# KAFKA_LIB_CACHE that every clone's ops/kafka/lib links to (a clone that has a folder of its own
# there keeps it): a fresh clone does not run Maven again.
KAFKA_LIB_CACHE ?= $(HOME)/.cache/hma-streams/kafka-lib
kafka-jars: $(STAMP)
	@if [ -L ops/kafka/lib ] || [ ! -e ops/kafka/lib ]; then \
	  lib="$(KAFKA_LIB_CACHE)/$$(sha256sum ops/kafka/pom.xml | cut -c1-16)"; \
	  mkdir -p "$$lib" && ln -sfn "$$lib" ops/kafka/lib; \
	fi
	$(PY) -m pipeline kafka jars

# promtool (Prometheus' Go module v0.316.0 is Prometheus 3.16) and helm; needs Go 1.24 or newer.
# The first build on a machine downloads and compiles a lot (about 39 and 30 minutes on a busy
# 2-core machine); later clones link the binaries in TOOLS_CACHE, and Go's caches are kept.
tools: $(TOOLS)/promtool $(TOOLS)/helm

$(TOOLS)/promtool: $(PROMTOOL_BUILT)
	mkdir -p $(TOOLS) && ln -sf $< $@

$(TOOLS)/helm: $(HELM_BUILT)
	mkdir -p $(TOOLS) && ln -sf $< $@

$(PROMTOOL_BUILT):
	GOBIN=$(dir $@) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

$(HELM_BUILT):
	GOBIN=$(dir $@) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

bench: setup
	$(PY) -m pipeline bench index --n 1000000

clean:
	-$(PY) -m pipeline kafka stop
	rm -rf $(VENV) .hmas .tools ops/kafka/lib
