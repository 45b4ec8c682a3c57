#!/usr/bin/env bash
# The cache part of the demo: two local Redis "regions" on ports of their own (us-east-1: a
# Redis Cluster of 3 masters on 17101-17103; us-west-2: one server on 16391), an eden_cache
# filled with realistic keys (sessions with TTLs, tenant hashes, rate-limit counters,
# leaderboards as sorted sets) and a little drift of each kind, then check, fix --dry-run,
# fix and check again. Run by scripts/demo.sh after the build; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/eden-reconcile}
CONFIG=fixtures/demo/redis-multi-region.yaml
ROOT=${EDEN_DEMO_REDIS:-/tmp/eden-demo-redis}
EAST=(17101 17102 17103)
WEST=16391

stop() {
  for p in "${EAST[@]}" "$WEST"; do
    if [ -f "$ROOT/$p/redis.pid" ]; then
      kill "$(cat "$ROOT/$p/redis.pid")" 2>/dev/null || true
    fi
  done
  for p in "${EAST[@]}" "$WEST"; do
    for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 || break; sleep 0.1; done
  done
  rm -rf "$ROOT"
}
start() { # port, extra args...
  local p=$1; shift
  mkdir -p "$ROOT/$p"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --save "" --appendonly no \
    --dir "$ROOT/$p" --pidfile "$ROOT/$p/redis.pid" --logfile "$ROOT/$p/redis.log" "$@" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server on port $p did not start (see $ROOT/$p/redis.log)" >&2; exit 2
}

stop
for p in "${EAST[@]}"; do
  start "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000
done
start "$WEST"
redis-cli --cluster create "${EAST[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 100); do
  ok=1
  for p in "${EAST[@]}"; do redis-cli -p "$p" cluster info | grep -q cluster_state:ok || ok=0; done
  [ $ok = 1 ] && break; sleep 0.1
done

# The same cache in both regions: 200 sessions (TTL 30 min), 40 tenant hashes, 100 rate-limit
# counters (TTL 60 s), 3 leaderboards.
fill() {
  for i in $(seq 1 200); do
    echo "SET session:$i '{\"user\":$((i * 7)),\"tenant\":$((i % 40 + 1)),\"csrf\":\"t$i\"}' EX 1800"
  done
  for t in $(seq 1 40); do
    echo "HSET tenant:$t name tenant-$t plan $([ $((t % 3)) = 0 ] && echo enterprise || echo pro) seats $((t * 5)) region us"
  done
  for i in $(seq 1 100); do echo "SET ratelimit:api:$i $((i % 17))"; echo "EXPIRE ratelimit:api:$i 60"; done
  for b in daily weekly alltime; do
    args=""; for u in $(seq 1 25); do args="$args $((u * 13 % 97)) user:$u"; done
    echo "ZADD leaderboard:$b$args"
  done
}
fill | redis-cli -c -p "${EAST[0]}" >/dev/null
fill | redis-cli -p "$WEST" >/dev/null

# A little drift of each kind.
E=(redis-cli -c -p "${EAST[0]}"); W=(redis-cli -p "$WEST")
"${W[@]}" DEL session:17 >/dev/null                       # missing in us-west-2
"${E[@]}" SET session:999 '{"user":1}' EX 1800 >/dev/null # missing in us-west-2 (only east)
"${W[@]}" SET session:1000 '{"user":2}' EX 1800 >/dev/null # missing in us-east-1
"${W[@]}" HSET tenant:3 plan free >/dev/null               # value
"${E[@]}" INCRBY ratelimit:api:9 5 >/dev/null              # value (TTL kept)
"${W[@]}" ZINCRBY leaderboard:weekly 50 user:4 >/dev/null  # value (a score)
"${W[@]}" PERSIST session:5 >/dev/null                     # ttl
"${W[@]}" DEL tenant:12 >/dev/null
"${W[@]}" SET tenant:12 'legacy-json' >/dev/null           # type

# Bold only on a terminal (and not with NO_COLOR): piped output stays plain text.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
else
  step() { printf '\n$ %s\n' "$*"; }
fi
run() { step "eden-reconcile $*"; "$BIN" --config "$CONFIG" "$@" || echo "(exit code $?)"; }
ARCHIVE_DIR=$(mktemp -d)
run check --db eden_cache
run fix --db eden_cache --dry-run
(cd "$ARCHIVE_DIR" && step "eden-reconcile fix --db eden_cache" && "$OLDPWD/$BIN" --config "$OLDPWD/$CONFIG" fix --db eden_cache || echo "(exit code $?)")
run check --db eden_cache
echo; echo "(archive of the deleted keys: $(ls "$ARCHIVE_DIR"/*.jsonl 2>/dev/null | head -1))"
