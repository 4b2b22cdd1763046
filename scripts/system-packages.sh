#!/usr/bin/env bash
# Installs the Debian packages modelport drives (names as arguments: haproxy, chromium), with
# apt-get, only those missing. Debian starts a system HAProxy on install; modelport runs its own.
set -euo pipefail
missing=""
for pkg in "$@"; do
  case "$pkg" in
    haproxy) command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy" ;;
    *) command -v "$pkg" >/dev/null || missing="$missing $pkg" ;;
  esac
done
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
  case "$missing" in
    *haproxy*) { command -v systemctl >/dev/null && $sudo systemctl stop haproxy 2>/dev/null; } || true ;;
  esac
fi
