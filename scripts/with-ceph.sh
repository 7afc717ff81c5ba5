#!/usr/bin/env bash
# with-ceph.sh CMD [ARG...] -- runs CMD with a Ceph RADOS Gateway serving S3: a cluster of its own
# (scripts/ceph-up.sh, on free ports, so concurrent runs on one machine do not share or stop each
# other's), stopped when CMD ends, fails or is interrupted; or, when the caller sets
# CAIRN_TEST_S3_ENDPOINT, that store (started and stopped by the caller). CMD gets
# CAIRN_TEST_S3_ENDPOINT, CAIRN_TEST_S3_ACCESS_KEY and CAIRN_TEST_S3_SECRET_KEY (the S3 tests use
# them; without them an S3 test file starts and stops a cluster of its own). Exits with CMD's status.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${CAIRN_CEPH_DIR:-/tmp/cairn-ceph-$$}
export CAIRN_TEST_S3_ACCESS_KEY=${CAIRN_TEST_S3_ACCESS_KEY:-${S3_ACCESS_KEY:-testkey}}
export CAIRN_TEST_S3_SECRET_KEY=${CAIRN_TEST_S3_SECRET_KEY:-${S3_SECRET_KEY:-testsecret}}
started=0
stop() { if [ "$started" = 1 ]; then started=0; bash "$HERE/ceph-down.sh" "$DIR"; fi; }
child=
# CMD runs in a process group of its own (set -m); INT or TERM here stops that whole group
# (the test runner and its test processes), then the cluster.
trap stop EXIT
trap '[ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null; exit 130' INT
trap '[ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null; exit 143' TERM
if [ -n "${CAIRN_TEST_S3_ENDPOINT:-}" ]; then
  echo "with-ceph: using the S3 endpoint given, $CAIRN_TEST_S3_ENDPOINT" >&2
else
  started=1
  CAIRN_TEST_S3_ENDPOINT=$(S3_ACCESS_KEY=$CAIRN_TEST_S3_ACCESS_KEY S3_SECRET_KEY=$CAIRN_TEST_S3_SECRET_KEY bash "$HERE/ceph-up.sh" "$DIR" | tail -n 1) || exit 1
  export CAIRN_TEST_S3_ENDPOINT
fi
set -m
"$@" &
child=$!
set +m
wait "$child"
rc=$?
child=
stop
exit $rc
