#!/usr/bin/env bash
# The whole test suite: install, lint, type-check, then every test (including the real-apiserver ones).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "error: Go is required to build the test bed (kube-apiserver, kubectl)" >&2; exit 2; }
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
python3 -m ruff check .
python3 -m ruff format --check kubectl_capc
python3 -m mypy
python3 -m pytest "$@"
