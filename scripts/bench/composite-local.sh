#!/usr/bin/env bash
# composite-local.sh: the `comp` shape of shapes.sh (comp(tenant int, id bigint, name,
# amount, at), PRIMARY KEY (tenant, id), 4 tenants) in two databases of ONE server,
# eden_composite_a and eden_composite_b (default 127.0.0.1:5432, user postgres), with
# 0.1 % drift on b (a third updated, deleted, inserted, as shapes.sh), then RUNS timed
# `check` runs of each binary in EDEN_BINS (interleaved), and the floor (both databases'
# `SELECT sum(hash_record_extended(t, 0))` at once).
#
#   SKIP_SEED=1 RUNS=3 EDEN_BINS="/tmp/eden-before target/release/eden-reconcile" scripts/bench/composite-local.sh
#
# Prints per run: label, wall s, peak RSS KiB, differences found, and the report's stats
# per region (rows_read, bytes_received, chunks, chunks_differing).
set -euo pipefail
HOST=${PGHOST:-127.0.0.1}; PORT=${PGPORT:-5432}
N=${COMP_ROWS:-1000000}
RUNS=${RUNS:-3}
EDEN_BINS=${EDEN_BINS:-target/release/eden-reconcile}
OUT=${OUT:-/tmp/eden-bench-results/composite_$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
P=(psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres)
if [ "${SKIP_SEED:-0}" != 1 ]; then
  for db in eden_composite_a eden_composite_b; do
    "${P[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    "${P[@]}" -d $db <<SQL
CREATE TABLE comp(tenant int, id bigint, name text, amount numeric(12,2), at timestamptz);
INSERT INTO comp SELECT g % 4, g, 'name-' || md5(g::text), (g % 100000) / 100.0,
  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, $N) g;
ALTER TABLE comp ADD PRIMARY KEY (tenant, id);
SQL
  done
  d=$((N / 1000))
  "${P[@]}" -d eden_composite_b <<SQL
BEGIN;
CREATE TEMP TABLE pick AS SELECT tenant, id, row_number() OVER (ORDER BY md5('pick-' || tenant::text || ',' || id::text)) AS rn FROM comp;
UPDATE comp t SET amount = amount + 1 FROM pick p WHERE (t.tenant, t.id) = (p.tenant, p.id) AND p.rn <= $((d / 3 + d % 3));
DELETE FROM comp t USING pick p WHERE (t.tenant, t.id) = (p.tenant, p.id) AND p.rn > $((d / 3 + d % 3)) AND p.rn <= $((d - d / 3));
INSERT INTO comp SELECT g % 4, -g, 'new', 1, now() FROM generate_series(1, $((d / 3))) g;
COMMIT;
SQL
  for db in eden_composite_a eden_composite_b; do "${P[@]}" -d $db -c "VACUUM (FREEZE, ANALYZE) comp"; done
  echo "seeded: $N rows, $d differing keys"
fi
for r in $(seq 1 "$RUNS"); do
  t0=$(date +%s.%N)
  q="SELECT sum(hash_record_extended(t, 0)) FROM comp t"
  "${P[@]}" -d eden_composite_a -c "$q" >/dev/null & "${P[@]}" -d eden_composite_b -c "$q" >/dev/null & wait
  awk -v a="$t0" -v b="$(date +%s.%N)" -v r="$r" 'BEGIN{printf "floor run %d: %.2f s\n", r, b-a}'
  i=0
  for bin in $EDEN_BINS; do
    i=$((i + 1)); L="bin$i.run$r"
    set +e
    /usr/bin/time -f "%e %M" -o "$OUT/$L.time" "$bin" check --db eden_composite_a --table comp --format json \
      --region a=postgresql://postgres@$HOST:$PORT/eden_composite_a \
      --region b=postgresql://postgres@$HOST:$PORT/eden_composite_b >"$OUT/$L.json" 2>"$OUT/$L.err"
    set -e
    python3 - "$OUT/$L.json" "$(tail -1 "$OUT/$L.time")" "$bin" "$r" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["tables"][0]
wall, rss = sys.argv[2].split()
st = {k: {f: v[f] for f in ("rows_read", "bytes_received", "chunks", "chunks_differing")} for k, v in t["stats"].items()}
print(f"{sys.argv[3]} run {sys.argv[4]}: {wall} s, {rss} KiB, {t['difference_count']} differences, {json.dumps(st)}")
PY
  done
done
echo "logs: $OUT"
