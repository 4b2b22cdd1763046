#!/usr/bin/env bash
# The whole test suite while a CPU hog keeps every core busy: the proof that no test needs an idle
# machine. Installs stress-ng (Debian package) if missing, starts `stress-ng --cpu N` (N = the
# number of cores, or HOG_CPUS), runs scripts/test.sh with the given pytest arguments, and stops
# the hog however the tests end.
#
#   bash scripts/test-busy.sh               # the whole suite, both cores busy
#   HOG_CPUS=4 bash scripts/test-busy.sh -m "not slow"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/system-packages.sh" stress-ng
cpus="${HOG_CPUS:-$(nproc)}"
set -m  # the hog gets its own process group, so stopping it stops its workers too
stress-ng --cpu "$cpus" --quiet &
hog=$!
set +m
stop_hog() {
  kill -TERM -- "-$hog" 2>/dev/null || true
  wait "$hog" 2>/dev/null || true
}
trap stop_hog EXIT
echo "test-busy: stress-ng --cpu $cpus running (pid $hog)"
bash "$root/scripts/test.sh" "$@"
