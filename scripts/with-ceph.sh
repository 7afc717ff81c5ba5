#!/usr/bin/env bash
# with-ceph.sh CMD [ARG...] -- runs CMD with a Ceph RADOS Gateway serving S3 (scripts/ceph-up.sh),
# started here unless one already answers on $CAIRN_TEST_S3_ENDPOINT (default http://127.0.0.1:7480),
# and stops what it started when CMD ends, fails or is interrupted. CMD gets CAIRN_TEST_S3_ENDPOINT,
# CAIRN_TEST_S3_ACCESS_KEY and CAIRN_TEST_S3_SECRET_KEY (the S3 tests use them; without them an S3
# test file starts and stops a cluster of its own). Exits with CMD's status.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${CAIRN_CEPH_DIR:-/tmp/cairn-ceph-$$}
export CAIRN_TEST_S3_ENDPOINT=${CAIRN_TEST_S3_ENDPOINT:-http://127.0.0.1:${RGW_PORT:-7480}}
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
if curl -s -o /dev/null "$CAIRN_TEST_S3_ENDPOINT/"; then
  echo "with-ceph: using the S3 endpoint already at $CAIRN_TEST_S3_ENDPOINT" >&2
else
  started=1
  S3_ACCESS_KEY=$CAIRN_TEST_S3_ACCESS_KEY S3_SECRET_KEY=$CAIRN_TEST_S3_SECRET_KEY bash "$HERE/ceph-up.sh" "$DIR" >/dev/null || exit 1
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
