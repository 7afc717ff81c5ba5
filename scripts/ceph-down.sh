#!/usr/bin/env bash
# ceph-down.sh [DIR] [--keep-logs] -- stops the daemons scripts/ceph-up.sh started for DIR (by their
# recorded pids: SIGTERM, then SIGKILL after 2 s) and deletes the cluster (its OSD is in RAM: the
# data goes with it). Nothing of it runs afterwards. Idempotent: a stopped or absent cluster is fine.
set -uo pipefail
DIR=${1:-${CAIRN_CEPH_DIR:-/tmp/cairn-ceph}}
keep=${2:-}
[ -d "$DIR" ] || exit 0
pids=()
# running: exists and is not a zombie (an exited daemon whose parent has not reaped it yet)
running() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" | cut -c1)" != Z ]; }
for d in rgw osd mgr mon; do
  f=$DIR/run/$d.pid
  [ -f "$f" ] || continue
  p=$(cat "$f")
  # only a process that is still the daemon started for this DIR (pids get reused)
  if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -qE '^([^ ]*/)?(ceph-mon|ceph-mgr|ceph-osd|radosgw) '; then
    kill "$p" 2>/dev/null && pids+=("$p")
  fi
done
for p in "${pids[@]}"; do
  for _ in $(seq 20); do running "$p" || break; sleep 0.1; done
  running "$p" && kill -9 "$p" 2>/dev/null
done
for p in "${pids[@]}"; do
  for _ in $(seq 50); do running "$p" || break; sleep 0.1; done
done
if [ "$keep" = --keep-logs ]; then
  rm -rf "$DIR"/{mon,osd,mgr,rgw,run}
else
  rm -rf "$DIR"
fi
echo "ceph stopped (cluster in $DIR removed)" >&2
