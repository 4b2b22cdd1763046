#!/usr/bin/env bash
# One command for the load benchmark: installs wrk (Debian) and modelport with the bench extra,
# then runs bench/http_bench.py (or, with `serving` first, bench/serving_bench.py; with `service`,
# bench/service_bench.py; with `gateway`, bench/gateway_bench.py; with `controlplane`,
# bench/controlplane_bench.py; with `workers`, bench/workers_bench.py) with the
# arguments given (see bench/README.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
source "$root/scripts/setup.sh" bench
if [ "${1:-}" = "service" ]; then   # a Service with 2 replicas against the replicas directly; rollout time
  shift
  bash "$root/scripts/system-packages.sh" haproxy
  exec "$PY" "$root/bench/service_bench.py" "$@"
fi
if [ "${1:-}" = "controlplane" ]; then   # a control-loop round's CPU and API get latency at 10/100/1,000 Deployments
  shift
  exec "$PY" "$root/bench/controlplane_bench.py" "$@"
fi
if [ "${1:-}" = "gateway" ]; then   # the gateway's cost against calling the model service directly
  shift
  exec "$PY" "$root/bench/gateway_bench.py" "$@"
fi
if [ "${1:-}" = "workers" ]; then   # --workers 2 vs a 2-worker floor and vs --workers 1; memory per worker
  shift
  exec "$PY" "$root/bench/workers_bench.py" "$@"
fi
if [ "${1:-}" = "interleaved" ]; then   # servers up at once, wrk on each in turn: bench/interleaved.py
  shift
  exec "$PY" "$root/bench/interleaved.py" "$@"
fi
if [ "${1:-}" = "serving" ]; then   # batching on/off and the protocols: bench/serving_bench.py
  shift
  exec "$PY" "$root/bench/serving_bench.py" "$@"
fi
exec "$PY" "$root/bench/http_bench.py" "$@"
