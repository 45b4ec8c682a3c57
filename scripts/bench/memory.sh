#!/usr/bin/env bash
# memory.sh [N] — peak client memory of `check` when every row differs.
#
# Creates three region databases eden_mem_r1..r3 on the local server (127.0.0.1:5432 unless
# PGHOST/PGPORT say otherwise) holding N rows (default 1,000,000) of a vault_secrets-like
# table (about 250 bytes a row), where every row differs in r2 (a changed column) and in r3
# (another changed column), then runs the release binary's `check --format json` with and
# without `--max-differences 100` under `/usr/bin/time -v` and prints wall time, peak RSS and
# the number of differences listed. SKIP_SEED=1 reuses the databases; KEEP=1 keeps them.
set -euo pipefail
N=${1:-1000000}
cd "$(dirname "$0")/../.."
BIN=${EDEN_BIN:-$PWD/target/release/eden-reconcile}
HOST=${PGHOST:-127.0.0.1}
PORT=${PGPORT:-5432}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres)
[ -x "$BIN" ] || cargo build --release -p eden-reconcile-cli
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

if [ "${SKIP_SEED:-0}" != 1 ]; then
  for r in 1 2 3; do
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS eden_mem_r$r WITH (FORCE)" -c "CREATE DATABASE eden_mem_r$r"
    "${PSQL[@]}" -d eden_mem_r$r <<SQL &
CREATE TABLE vault_secrets(id bigint PRIMARY KEY, tenant_id uuid, path text, secret bytea,
  version int, metadata jsonb, last_updated_at timestamptz NOT NULL);
INSERT INTO vault_secrets
SELECT g, md5('tenant-' || (g % 500))::uuid,
       'kv/tenant-' || (g % 500) || '/app-' || (g % 37) || '/' || substr(md5('p' || g), 1, 16),
       decode(md5('s1-' || g) || md5('s2-' || g), 'hex'),
       1 + (g % 7) + CASE WHEN $r = 2 THEN 1 ELSE 0 END,
       jsonb_build_object('owner', 'svc-' || (g % 97), 'rotation_days', 30 + (g % 60)),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
         + CASE WHEN $r = 3 THEN interval '1 day' ELSE interval '0' END
FROM generate_series(1, $N) g;
VACUUM ANALYZE vault_secrets;
SQL
  done
  wait
fi

conn() { echo "host=$HOST port=$PORT user=postgres dbname=eden_mem_r$1"; }
run() {
  local label=$1; shift
  /usr/bin/time -v "$BIN" check --region r1="$(conn 1)" --region r2="$(conn 2)" --region r3="$(conn 3)" \
    --table vault_secrets --format json "$@" >/tmp/eden-mem.json 2>/tmp/eden-mem.err || true
  local rss wall listed
  rss=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2/1024}' /tmp/eden-mem.err)
  wall=$(awk -F': ' '/Elapsed \(wall/ {print $2}' /tmp/eden-mem.err)
  listed=$(grep -c '"missing_in"' /tmp/eden-mem.json || true)
  echo "$label: wall $wall, peak RSS ${rss} MiB, differences listed $listed"
}
run "no cap" 
run "--max-differences 100" --max-differences 100
if [ "${KEEP:-0}" != 1 ] && [ "${SKIP_SEED:-0}" != 1 ]; then
  for r in 1 2 3; do "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS eden_mem_r$r WITH (FORCE)"; done
fi
