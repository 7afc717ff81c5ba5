#!/usr/bin/env bash
# ceph-up.sh [DIR] -- a throwaway one-node Ceph (Debian's ceph 16) serving S3 through the RADOS
# Gateway on 127.0.0.1, for the S3 tests: a monitor, a manager, one OSD on memstore (RAM only,
# nothing on disk but logs and the monitor's store in DIR) and radosgw (beast), auth none, no
# systemd. Takes about 15 s. Ports: $RGW_PORT for S3 and $MON_PORT_V2/$MON_PORT_V1 for the monitor,
# each a free port chosen here when unset, so several clusters (several test runs) can coexist.
# Idempotent: when the cluster of DIR already answers it only prints its endpoint; a half-started
# one is stopped first. On failure it stops what it started.
# Prints the endpoint (http://127.0.0.1:PORT) as its last line on stdout; progress goes to stderr.
# S3 credentials: $S3_ACCESS_KEY / $S3_SECRET_KEY (default testkey / testsecret).
# Needs: apt-get install -y --no-install-recommends ceph-mon ceph-osd ceph-mgr radosgw ceph-common
# (scripts/install-test-deps.sh). Stop with scripts/ceph-down.sh DIR.
set -euo pipefail
DIR=${1:-${CAIRN_CEPH_DIR:-/tmp/cairn-ceph}}
AK=${S3_ACCESS_KEY:-testkey}; SK=${S3_SECRET_KEY:-testsecret}
HERE=$(cd "$(dirname "$0")" && pwd)
export CEPH_CONF=$DIR/ceph.conf

alive() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }
if alive mon && alive osd && alive rgw && [ -f "$DIR/run/user.done" ] && [ -f "$DIR/endpoint" ] && curl -sf -o /dev/null "$(cat "$DIR/endpoint")/"; then
  echo "ceph S3 already up (cluster in $DIR)" >&2
  cat "$DIR/endpoint"
  exit 0
fi
for d in mon mgr osd rgw; do
  if alive "$d"; then bash "$HERE/ceph-down.sh" "$DIR"; break; fi
done
for tool in monmaptool ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph curl python3; do
  command -v "$tool" >/dev/null || { echo "ceph-up: $tool missing (run scripts/install-test-deps.sh as root)" >&2; exit 1; }
done
# Three distinct free ports (bound together, then released: another process could take one in
# between, in which case a daemon fails to bind and this script fails and cleans up).
read -r P1 P2 P3 < <(python3 -c 'import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])')
RGW_PORT=${RGW_PORT:-$P1}; MON_PORT_V2=${MON_PORT_V2:-$P2}; MON_PORT_V1=${MON_PORT_V1:-$P3}
ENDPOINT=http://127.0.0.1:$RGW_PORT
MON_ADDR="[v2:127.0.0.1:$MON_PORT_V2,v1:127.0.0.1:$MON_PORT_V1]"
if curl -s -o /dev/null "$ENDPOINT/"; then
  echo "ceph-up: something else already listens on $ENDPOINT" >&2; exit 1
fi

t0=$(date +%s%N)
trap 'echo "ceph-up: failed; logs in $DIR/log (stopping what started)" >&2; tail -n 5 "$DIR"/log/*.out >&2 2>/dev/null || true; bash "$HERE/ceph-down.sh" "$DIR" --keep-logs' ERR
rm -rf "$DIR"; mkdir -p "$DIR"/{mon,osd,mgr,rgw,run,log}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$CEPH_CONF" <<CONF
[global]
fsid = $FSID
mon host = $MON_ADDR
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon max pg per osd = 1000
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail crit = 0
mon data avail warn = 0
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
keyring = /dev/null
[mon.a]
mon data = $DIR/mon
[mgr.x]
mgr data = $DIR/mgr
mgr initial modules =
[osd.0]
osd data = $DIR/osd
osd objectstore = memstore
memstore device bytes = ${MEMSTORE_BYTES:-2147483648}
osd class load list = *
osd class default list = *
[client.rgw]
ms mon client mode = crc
auth client required = none
# tcp_nodelay=1: without it every GET body waits ~40 ms behind its head (Nagle and delayed ACK on a reused connection).
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $DIR/rgw
rgw dns name = localhost
rgw enable usage log = false
CONF

# monitor
monmaptool --create --fsid "$FSID" --addv a "$MON_ADDR" "$DIR/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring /dev/null
ceph-mon -f -i a > "$DIR/log/mon.out" 2>&1 & echo $! > "$DIR/run/mon.pid"
timeout 60 bash -c "until ceph -s >/dev/null 2>&1; do sleep 0.2; done"
# manager ('ceph -s' and health need it; S3 I/O works without)
ceph-mgr -f -i x > "$DIR/log/mgr.out" 2>&1 & echo $! > "$DIR/run/mgr.pid"
# one OSD on memstore
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph osd new "$OSD_UUID")
ceph-osd -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" > "$DIR/log/osd-mkfs.out" 2>&1
ceph-osd -f -i "$OSD_ID" > "$DIR/log/osd.out" 2>&1 & echo $! > "$DIR/run/osd.pid"
timeout 60 bash -c "until ceph osd stat 2>/dev/null | grep -q '1 up'; do sleep 0.2; done"
# RADOS gateway (creates its pools on first start), then the S3 user
radosgw -f -n client.rgw > "$DIR/log/rgw.out" 2>&1 & echo $! > "$DIR/run/rgw.pid"
timeout 120 bash -c "until curl -sf -o /dev/null $ENDPOINT/; do sleep 0.2; done"
radosgw-admin -n client.admin user create --uid=ci --display-name=ci \
  --access-key="$AK" --secret-key="$SK" > "$DIR/log/user.json"
touch "$DIR/run/user.done"
echo "$ENDPOINT" > "$DIR/endpoint"
trap - ERR
echo "ceph S3 up on $ENDPOINT (key $AK, cluster in $DIR) in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
echo "$ENDPOINT"
