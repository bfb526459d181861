#!/usr/bin/env bash
# Builds a stand-in for the base image python:3.11-slim-bookworm from Debian packages, for machines
# that cannot pull from a registry: debootstrap (minbase) + python3, python3-venv, python3-pip and
# ca-certificates, `python` and `pip` on PATH, no PEP 668 "externally managed" marker, then
# `docker import` under the same name. Called by docker/build-images.sh when the pull fails.
#
#   docker/base-image.sh [IMAGE]        # default: python:3.11-slim-bookworm
#
# DEBIAN_MIRROR: the mirror to install from (default: the first non-security one apt uses, read from
# /etc/apt/sources.list and /etc/apt/sources.list.d/*). Needs root and debootstrap.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

image=${1:-python:3.11-slim-bookworm}
suite=bookworm
command -v debootstrap >/dev/null || die "debootstrap is missing (Debian: apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "debootstrap needs root: run this as root (or pull $image from a registry)"

mirror=${DEBIAN_MIRROR:-$(debian_mirror /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)}
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR (e.g. http://deb.debian.org/debian)"

rootfs=$(mktemp -d /tmp/distillrec-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
say "debootstrap $suite from $mirror into $rootfs (a few minutes)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed (full log: $rootfs.log)"; }
rm -f "$rootfs.log"
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
say "docker import as $image"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.distillrec.stand-in=\"debootstrap $suite $mirror\"" \
    --change 'CMD ["python3"]' - "$image" >/dev/null
say "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
