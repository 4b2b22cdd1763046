#!/usr/bin/env bash
# Installs the Debian packages modelport drives (names as arguments: haproxy, chromium, ...), with
# apt-get, only those missing.
set -euo pipefail
missing=""
for pkg in "$@"; do
  case "$pkg" in
    haproxy) command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy" ;;
    chromium-driver) command -v chromedriver >/dev/null || missing="$missing chromium-driver" ;;
    # Debian's kubectl (1.20, with kustomize built in); any kubectl already installed will do.
    kubernetes-client) command -v kubectl >/dev/null || missing="$missing kubernetes-client" ;;
    # Debian's Docker engine (dockerd, containerd, runc) and debootstrap live in /usr/sbin.
    docker.io) command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || missing="$missing docker.io" ;;
    debootstrap) command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap" ;;
    nodejs) command -v node >/dev/null || missing="$missing nodejs" ;;
    # Data, not a command: Fashion-MNIST's idx files (the drift test sends them to the MNIST model).
    dataset-fashion-mnist) [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || missing="$missing dataset-fashion-mnist" ;;
    *) command -v "$pkg" >/dev/null || missing="$missing $pkg" ;;
  esac
done
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
  # Debian starts the services it installs; modelport runs its own instances.
  for service in haproxy prometheus prometheus-node-exporter docker containerd; do
    { command -v systemctl >/dev/null && $sudo systemctl stop "$service" 2>/dev/null; } || true
  done
fi
