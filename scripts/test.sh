#!/usr/bin/env bash
# Set everything up, then run the whole test suite (unit and integration
# tests, on the real CRIU; the integration tests need root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cd build
ctest --output-on-failure --timeout 600 "$@"
