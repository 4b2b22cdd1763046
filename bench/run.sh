#!/usr/bin/env bash
# One command for the load benchmark: installs wrk (Debian) and modelport with the bench extra,
# then runs bench/http_bench.py with any arguments given (see bench/README.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
source "$root/scripts/setup.sh" bench
exec "$PY" "$root/bench/http_bench.py" "$@"
