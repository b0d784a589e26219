# Two entry points: `make run` (set up, generate the built-in dataset if missing, kedro run)
# and `make test` (set up, pytest). Set-up is skipped when the venv is already current.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
# The default photo folder, from its one home (conf/base/globals.yml).
RAW_DIR := $(shell sed -n 's/^raw_dir: *\([^ #]*\).*/\1/p' conf/base/globals.yml)
SYNTH_ARGS ?= --per-category 500 --seed 42 --size 128
KEDRO_ARGS ?=
PORT ?= 3000
TRACKING_DIR ?= .tracking
TRACKING_PORT ?= 5055
# pytest-xdist workers of `make test` (0 runs in one process). Three on the 2-core CI machine: the
# tests also wait (servers starting, subprocesses, live reload), and a third worker fills that time:
# 782 s with 3 against 918 s with 2 on this machine, idle CPU 6% against 14%.
TEST_WORKERS ?= 3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup run test lint screenshots test-random browser postgresql tracking-server tracking-server-stop airflow-venv airflow-dag serve bento reliability redteam quality fashion-mnist data viz mlflow-ui benchmarks clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

data: $(STAMP)
	@if [ -z "$$(ls -A $(RAW_DIR) 2>/dev/null)" ]; then \
		echo "Generating the built-in dataset into $(RAW_DIR)"; \
		$(BIN)/jewelry-pipeline synth --out $(RAW_DIR) $(SYNTH_ARGS); \
	else echo "Using existing photos in $(RAW_DIR)"; fi

run: data
	$(BIN)/kedro run $(KEDRO_ARGS)

test: $(STAMP) $(AIRFLOW_STAMP) browser postgresql lint
	$(BIN)/python -m pytest -p no:randomly -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The project's own style limits (pyproject.toml [tool.ruff]): lint and formatting, before the tests.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks jewelry_testing
	$(BIN)/ruff format --check src tests benchmarks jewelry_testing

# The same suite in a shuffled order (pytest-randomly): `make test-random SEED=1`; tests must pass in any order.
test-random: $(STAMP) browser
	$(BIN)/python -m pytest -p randomly -p no:cacheprovider --randomly-seed=$(or $(SEED),1) $(PYTEST_ARGS)

# The web-page test drives Debian's headless Chromium through its own chromedriver (nothing downloaded).
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium and chromium-driver for the web-page test"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Debian's PostgreSQL server, for the team tracking server and its tests (installed when missing).
postgresql:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
		echo "Installing Debian's postgresql for the team tracking server"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# A team's MLflow tracking server on this machine: PostgreSQL on 127.0.0.1:55432 (its data in
# $(TRACKING_DIR)/, created on first start) and `mlflow server --serve-artifacts` on
# 127.0.0.1:$(TRACKING_PORT). Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:$(TRACKING_PORT); kedro run --env team
tracking-server: $(STAMP) postgresql
	$(BIN)/jewelry-pipeline tracking-server start --folder $(TRACKING_DIR) --port $(TRACKING_PORT)

tracking-server-stop: $(STAMP)
	$(BIN)/jewelry-pipeline tracking-server stop --folder $(TRACKING_DIR)

# Airflow in its own virtual environment (it pins its own dependencies, some unlike the project's:
# fastapi, opentelemetry), with the project installed into it: constraints-airflow.txt.
airflow-venv: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): pyproject.toml constraints-airflow.txt
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-airflow.txt apache-airflow kedro-airflow -e .
	@touch $(AIRFLOW_STAMP)

# The pipelines as an Airflow DAG (kedro-airflow, one task per category namespace) in build/airflow_dags/,
# after checking that no dataset crosses two tasks in memory. Run it from this folder:
#   AIRFLOW_HOME=$$PWD/build/airflow AIRFLOW__CORE__DAGS_FOLDER=$$PWD/build/airflow_dags \
#   MLFLOW_TRACKING_URI=http://127.0.0.1:5055 .venv-airflow/bin/airflow dags test jewelry-pipeline
airflow-dag: $(AIRFLOW_STAMP)
	$(AIRFLOW_VENV)/bin/python -m jewelry_pipeline.orchestration --env team
	$(AIRFLOW_VENV)/bin/kedro airflow create --env team --group-by namespace \
		--jinja-file src/jewelry_pipeline/templates/airflow_dag.j2 --target-dir build/airflow_dags

# The service on 127.0.0.1:3000, serving the champion bundle from the BentoML model store
# (or JEWELRY_BUNDLE=path/to/bundle). Web page at http://127.0.0.1:3000/.
serve: $(STAMP)
	$(BIN)/bentoml serve jewelry_pipeline.serving.service:JewelryService --host 127.0.0.1 --port $(PORT)

bento: $(STAMP)
	$(BIN)/bentoml build .

# The web page at desktop and phone width, serving the bundle of `make run`: docs/screenshots/.
screenshots: $(STAMP) browser
	$(BIN)/python -m benchmarks.screenshots

# Load, soak, faults, hostile files and reproducibility against the bundle of `make run`
# (about 12 minutes); writes docs/RELIABILITY.md. A light version runs in `make test`.
reliability: $(STAMP)
	$(BIN)/python -m benchmarks.reliability

# The hostile requests of issue #31 against a `make run`'s bundle (or BUNDLE=path), on 127.0.0.1:
# writes docs/SECURITY.md and benchmarks/results/redteam.json.
redteam: $(STAMP)
	$(BIN)/python -m benchmarks.redteam $(if $(BUNDLE),--bundle $(BUNDLE))

# Real-photo quality: Fashion-MNIST (Debian's dataset-fashion-mnist) and the built-in data, each through the
# real `kedro run` in a scratch project under build/quality/ (about 40 min); writes docs/QUALITY.md.
quality: $(STAMP) fashion-mnist
	$(BIN)/python -m benchmarks.quality

fashion-mnist:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || { \
		echo "Installing Debian's dataset-fashion-mnist for the quality benchmark"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }

viz: $(STAMP)
	$(BIN)/kedro viz run --host 127.0.0.1

# The MLflow UI of this machine's runs; with the team tracking server running, its URL (the server
# is the UI of the team's runs).
mlflow-ui: $(STAMP)
	@if url=$$($(BIN)/jewelry-pipeline tracking-server status --folder $(TRACKING_DIR) 2>/dev/null); then \
		echo "The team tracking server is the UI: $$url"; \
	else $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000; fi

benchmarks: $(STAMP)
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.train_classifier
	$(BIN)/python -m benchmarks.retrieval
	$(BIN)/python -m benchmarks.serve
	$(BIN)/python -m benchmarks.startup

clean:
	rm -rf data/0[2-8]_*/[!.]* mlruns/[!.]*
