#!/usr/bin/env bash
# A root file system of Debian with Python 3 (debootstrap, minbase), as a tarball for `docker
# import`: the base image tests/kube/test_build_image.py builds on (no image registry is
# reachable here, so `FROM python:3.11-slim` cannot be pulled). Made once; an existing tarball is
# kept. Usage: scripts/debian-python-rootfs.sh TARBALL
set -euo pipefail
out="$1"
[ -s "$out" ] && exit 0
suite="$(. /etc/os-release && echo "$VERSION_CODENAME")"
# The Debian mirror apt already uses (one-line or deb822 sources), not a -security one. Either
# kind of file may be missing (`|| true`: under pipefail a failed cat would end the script).
mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
  | awk '$1 == "deb" && /debian/ && !/security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' || true)"
[ -n "$mirror" ] || mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | awk '/^URIs:/ && /debian/ && !/security/ { print $2; exit }' || true)"
[ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
mkdir -p "$(dirname "$out")"
rootfs="$out.rootfs"
rm -rf "$rootfs"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
$sudo debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$rootfs" "$mirror" >"$out.log" 2>&1 \
  || { tail -20 "$out.log" >&2; exit 1; }
$sudo tar -C "$rootfs" -cf "$out.partial" .
mv "$out.partial" "$out"
$sudo rm -rf "$rootfs"
