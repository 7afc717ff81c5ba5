#!/usr/bin/env bash
# Installs what the test suite and benchmarks need on Debian/Ubuntu (run as root):
# the real ostree client and libostree's own test suite, getfattr/setfattr for
# xattrs, gpg for signatures, xz for delta vectors, nginx and wrk for the
# benchmark baselines (debootstrap builds the root filesystems of bench:delta),
# Debian's Chromium for the web UI's browser tests (driven by playwright-core), and Ceph
# (mon, osd, mgr, radosgw) for the S3 driver's tests against a real RADOS Gateway (scripts/ceph-up.sh),
# flatpak (with bubblewrap) and a static busybox for test/flatpak (a tiny runtime, an app, a user).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  ostree ostree-tests attr gnupg xz-utils e2fsprogs nginx-light wrk debootstrap ca-certificates chromium \
  ceph-mon ceph-osd ceph-mgr radosgw ceph-common curl flatpak busybox-static >/dev/null
command -v ostree >/dev/null
test -x /usr/bin/chromium
command -v radosgw >/dev/null
command -v flatpak >/dev/null
