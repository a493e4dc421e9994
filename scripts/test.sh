#!/usr/bin/env bash
# The whole test suite: install, lint, type-check, then every test (including the real-apiserver ones).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "error: Go is required to build the test bed (kube-apiserver, kubectl)" >&2; exit 2; }
# Debian tools the image pipeline tests drive for real (qemu-img conversions, image-builder's make).
missing=()
command -v qemu-img >/dev/null || missing+=(qemu-utils)
command -v make >/dev/null || missing+=(make)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Bytecode caches are written even where the environment turns them off: without them every plugin
# process a test starts compiles the package again, and every worker rewrites every test module's asserts.
unset PYTHONDONTWRITEBYTECODE
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
python3 -m ruff check .
python3 -m ruff format --check kubectl_capc
python3 -m mypy
lint-imports  # the layer contracts in .importlinter
# Downloads and Go builds happen here, not inside a test's timeout (a cold build takes many minutes).
python3 -m tests.testenv prepare
# Two workers; a test file stays on one worker, so module-scoped scenes are built once. Files start in
# collection order (tests/conftest.py puts the longest first), not xdist's most-tests-first.
python3 -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
