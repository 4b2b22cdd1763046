#!/usr/bin/env bash
# The whole test suite: installs modelport with its test extras, then runs pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh" test
cd "$root"
exec "$PY" -m pytest "$@"
