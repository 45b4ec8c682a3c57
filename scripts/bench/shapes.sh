#!/usr/bin/env bash
# shapes.sh [SHAPE...]: eden vs the in-server floor (and pg_comparator where it can) on
# table shapes other than the shared harness's vault_secrets, on the same bench clusters
# (../shared/bench/pg-up.sh: east 127.0.0.1:55432, west 127.0.0.1:55433), database
# eden_shapes. Shapes (default: all):
#   narrow  narrow(id bigint PK, v int), NARROW_ROWS rows (default 10,000,000)
#   wide    wide(id bigint PK + 39 columns: text, jsonb, numeric, timestamptz, arrays,
#           uuid, bytea, ...), WIDE_ROWS rows (default 500,000)
#   textkey textkey(k text COLLATE "C" PK, v int, payload text), random md5 keys,
#           TEXT_ROWS rows (default 1,000,000)
#   comp    comp(tenant int, id bigint, ..., PK (tenant, id)), 4 tenants (the first key
#           column has 4 values), COMP_ROWS rows (default 1,000,000)
# West diverges on DIFF_PCT % of the rows (default 0.1): a third updated, a third
# deleted, a third inserted. Each shape is seeded (SKIP_SEED=1 reuses it), then floor,
# eden and pg_comparator run RUNS times (default 3), interleaved; the table printed gives
# medians of wall seconds and server CPU seconds (both clusters' backends), the client's
# peak RSS, the differing keys found against the expected count.
#
#   EDEN_BIN=$PWD/target/release/eden-reconcile scripts/bench/shapes.sh narrow comp
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BENCH_ROOT=${BENCH_ROOT:-/tmp/eden-bench}
EDEN_BIN=${EDEN_BIN:-target/release/eden-reconcile}
RUNS=${RUNS:-3}
PCT=${DIFF_PCT:-0.1}
OUT=${OUT:-/tmp/eden-bench-results/shapes_$(date -u +%Y%m%dT%H%M%SZ)}
SHAPES=${*:-narrow wide textkey comp}
mkdir -p "$OUT"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
EAST="host=127.0.0.1 port=55432 user=postgres"
WEST="host=127.0.0.1 port=55433 user=postgres"

for c in "$EAST" "$WEST"; do
  "${PSQL[@]}" "$c dbname=postgres" -At -c "SELECT 1 FROM pg_database WHERE datname = 'eden_shapes'" | grep -q 1 \
    || "${PSQL[@]}" "$c dbname=postgres" -c "CREATE DATABASE eden_shapes"
  "${PSQL[@]}" "$c dbname=eden_shapes" -c "CREATE EXTENSION IF NOT EXISTS pgcmp" -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm"
done

# DDL + load of one shape: $1 = shape; prints nothing.
load_sql() {
  case $1 in
  narrow) cat <<SQL
CREATE TABLE narrow(id bigint, v int);
INSERT INTO narrow SELECT g, g % 1000 FROM generate_series(1, ${NARROW_ROWS:-10000000}) g;
ALTER TABLE narrow ADD PRIMARY KEY (id);
SQL
  ;;
  wide) {
    echo "CREATE TABLE wide(id bigint"
    for i in $(seq 1 39); do
      case $((i % 8)) in
        0) echo ", c$i text" ;; 1) echo ", c$i jsonb" ;; 2) echo ", c$i numeric(14,2)" ;;
        3) echo ", c$i timestamptz" ;; 4) echo ", c$i int[]" ;; 5) echo ", c$i text[]" ;;
        6) echo ", c$i uuid" ;; 7) echo ", c$i bigint" ;;
      esac
    done
    echo ");"
    echo "INSERT INTO wide SELECT g"
    for i in $(seq 1 39); do
      case $((i % 8)) in
        0) echo ", 'text-$i-' || md5(g::text || '$i')" ;;
        1) echo ", jsonb_build_object('k', g % 97, 'c', $i, 'tags', jsonb_build_array('a' || (g % 5), g % 3))" ;;
        2) echo ", ((g * $i) % 1000000) / 100.0" ;;
        3) echo ", timestamptz '2024-01-01 00:00:00+00' + (g + $i) * interval '1 second'" ;;
        4) echo ", ARRAY[g % 10, g % 100, $i]" ;;
        5) echo ", ARRAY['x' || (g % 7), 'y$i']" ;;
        6) echo ", md5(g::text || 'u$i')::uuid" ;;
        7) echo ", g * $i" ;;
      esac
    done
    echo "FROM generate_series(1, ${WIDE_ROWS:-500000}) g;"
    echo "ALTER TABLE wide ADD PRIMARY KEY (id);"
  } ;;
  textkey) cat <<SQL
CREATE TABLE textkey(k text COLLATE "C", v int, payload text);
INSERT INTO textkey SELECT md5('k' || g), g, repeat(md5(g::text), 2) FROM generate_series(1, ${TEXT_ROWS:-1000000}) g;
ALTER TABLE textkey ADD PRIMARY KEY (k);
SQL
  ;;
  comp) cat <<SQL
CREATE TABLE comp(tenant int, id bigint, name text, amount numeric(12,2), at timestamptz);
INSERT INTO comp SELECT g % 4, g, 'name-' || md5(g::text), (g % 100000) / 100.0,
  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, ${COMP_ROWS:-1000000}) g;
ALTER TABLE comp ADD PRIMARY KEY (tenant, id);
SQL
  ;;
  esac
}
# Key expression and a fresh row for inserts on west, per shape.
key_of() { case $1 in narrow|wide) echo "id::text" ;; textkey) echo "k" ;; comp) echo "tenant::text || ',' || id::text" ;; esac; }
keycols() { case $1 in narrow|wide) echo "id" ;; textkey) echo "k" ;; comp) echo "tenant,id" ;; esac; }
upd_sql() { case $1 in narrow) echo "v = v + 1" ;; wide) echo "c8 = c8 || '!', c9 = c9 || '{\"x\":1}'" ;; textkey) echo "v = -v" ;; comp) echo "amount = amount + 1" ;; esac; }
ins_sql() {  # $1 shape, $2 count: INSERT of rows whose keys are not on east
  case $1 in
  narrow) echo "INSERT INTO narrow SELECT -g, 7 FROM generate_series(1, $2) g" ;;
  wide) echo "INSERT INTO wide (id, c8, c9) SELECT -g, 'new', '{}' FROM generate_series(1, $2) g" ;;
  textkey) echo "INSERT INTO textkey SELECT md5('new' || g), g, 'new' FROM generate_series(1, $2) g" ;;
  comp) echo "INSERT INTO comp SELECT g % 4, -g, 'new', 1, now() FROM generate_series(1, $2) g" ;;
  esac
}

seed() {  # $1 shape
  local s=$1 t0 t1
  t0=$(date +%s.%N)
  for c in "$EAST" "$WEST"; do
    { "${PSQL[@]}" "$c dbname=eden_shapes" -c "DROP TABLE IF EXISTS $s"; load_sql "$s" | "${PSQL[@]}" "$c dbname=eden_shapes"; } &
  done
  wait
  local n d
  n=$("${PSQL[@]}" -At "$EAST dbname=eden_shapes" -c "SELECT count(*) FROM $s")
  d=$(awk -v n="$n" -v p="$PCT" 'BEGIN{printf "%d", n*p/100 + 0.5}')
  local k; k=$(key_of "$s")
  "${PSQL[@]}" "$WEST dbname=eden_shapes" <<SQL
BEGIN;
CREATE TEMP TABLE pick AS SELECT $(keycols "$s"), row_number() OVER (ORDER BY md5('pick-' || $k)) AS rn FROM $s;
CREATE TEMP TABLE gone AS SELECT $k AS key FROM pick WHERE rn <= $d;
UPDATE $s t SET $(upd_sql "$s") FROM pick p WHERE ($(sed 's/\([a-z]*\)/t.\1/g' <<<"$(keycols "$s")")) = ($(sed 's/\([a-z]*\)/p.\1/g' <<<"$(keycols "$s")")) AND p.rn <= $((d / 3 + d % 3));
DELETE FROM $s t USING pick p WHERE ($(sed 's/\([a-z]*\)/t.\1/g' <<<"$(keycols "$s")")) = ($(sed 's/\([a-z]*\)/p.\1/g' <<<"$(keycols "$s")")) AND p.rn > $((d / 3 + d % 3)) AND p.rn <= $((d - d / 3));
$(ins_sql "$s" $((d / 3)));
COMMIT;
SQL
  for c in "$EAST" "$WEST"; do
    "${PSQL[@]}" "$c dbname=eden_shapes" -c "VACUUM (FREEZE, ANALYZE) $s" -c "CHECKPOINT" &
  done
  wait
  t1=$(date +%s.%N)
  echo "$d" >"$OUT/$s.expected"
  awk -v a="$t0" -v b="$t1" -v s="$s" -v n="$n" -v d="$d" 'BEGIN{printf "seeded %s: %d rows, %d differing keys, %.0f s\n", s, n, d, b-a}'
}

ticks() { local t=0 pid f; for c in east west; do pid=$(head -1 "$BENCH_ROOT/$c/postmaster.pid"); read -r -a f <"/proc/$pid/stat"; t=$((t + f[15] + f[16])); done; echo $t; }

pgc_cols() {  # the non-key columns for pg_comparator's URL
  "${PSQL[@]}" -At "$EAST dbname=eden_shapes" -c "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
    WHERE attrelid = '$1'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> ALL (string_to_array('$(keycols "$1")', ','))"
}

run_one() {  # $1 shape $2 peer $3 run
  local s=$1 p=$2 so=$OUT/$1.$2.run$3.out tv=$OUT/$1.$2.run$3.time c0 c1 t0 t1 rc keys
  case $p in
  floor) cmd=(bash -c "q='SELECT sum(hash_record_extended(t, 0)) FROM $s t'
      $PGBIN/psql -X -q -h 127.0.0.1 -p 55432 -U postgres eden_shapes -c \"\$q\" >/dev/null &
      $PGBIN/psql -X -q -h 127.0.0.1 -p 55433 -U postgres eden_shapes -c \"\$q\" >/dev/null &
      wait") ;;
  eden) cmd=("$EDEN_BIN" check --db eden_shapes --table "$s" --format json
      --region us-east-1=postgres://postgres@127.0.0.1:55432/eden_shapes
      --region us-west-2=postgres://postgres@127.0.0.1:55433/eden_shapes) ;;
  pg_comparator) cmd=(pg_comparator --max-ratio=2.0
      "pgsql://postgres@127.0.0.1:55432/eden_shapes/public.$s?$(keycols "$s"):$(pgc_cols "$s")"
      "pgsql://postgres@127.0.0.1:55433/eden_shapes/public.$s") ;;
  esac
  c0=$(ticks); t0=$(date +%s.%N)
  set +e; /usr/bin/time -v -o "$tv" "${cmd[@]}" >"$so" 2>"$OUT/$s.$p.run$3.err"; rc=$?; set -e
  t1=$(date +%s.%N); sleep 0.5; c1=$(ticks)
  case $p in
  floor) keys=- ;;
  eden) keys=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tables"][0]["difference_count"])' "$so" 2>/dev/null || echo "?") ;;
  pg_comparator) keys=$(grep -cE '^(UPDATE|INSERT|DELETE) ' "$so" || true) ;;
  esac
  printf '%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\n' "$s" "$p" "$3" "$rc" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$(awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" 'BEGIN{print (b-a)/t}')" \
    "$(awk -F': ' '/Maximum resident/{print $2}' "$tv")" "$keys" | tee -a "$OUT/runs.tsv"
}

printf 'shape\tpeer\trun\texit\twall_s\tserver_cpu_s\tmaxrss_kb\tkeys\n' >"$OUT/runs.tsv"
for s in $SHAPES; do
  [ "${SKIP_SEED:-0}" = 1 ] || seed "$s"
  [ -f "$OUT/$s.expected" ] || "${PSQL[@]}" -At "$EAST dbname=eden_shapes" -c "SELECT 0" >/dev/null
  for c in "$EAST" "$WEST"; do "${PSQL[@]}" "$c dbname=eden_shapes" -c "SELECT pg_prewarm('$s')" >/dev/null; done
  for r in $(seq 1 "$RUNS"); do
    for p in ${PEERS:-floor eden pg_comparator}; do run_one "$s" "$p" "$r"; done
  done
done
python3 - "$OUT" <<'PY'
import csv, os, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "runs.tsv")), delimiter="\t"))
print("\n| shape | peer | wall s | server CPU s | client peak RSS MiB | keys (expected) | wall / floor | server CPU / floor |")
print("|---|---|---|---|---|---|---|---|")
for s in dict.fromkeys(r["shape"] for r in rows):
    exp = open(os.path.join(out, s + ".expected")).read().strip() if os.path.exists(os.path.join(out, s + ".expected")) else "?"
    med = {}
    for p in dict.fromkeys(r["peer"] for r in rows if r["shape"] == s):
        rs = [r for r in rows if r["shape"] == s and r["peer"] == p]
        med[p] = (statistics.median(float(r["wall_s"]) for r in rs), statistics.median(float(r["server_cpu_s"]) for r in rs),
                  max(int(r["maxrss_kb"] or 0) for r in rs) / 1024, "/".join(sorted({r["keys"] for r in rs})))
    fw, fc = med.get("floor", (None, None, 0, ""))[:2]
    for p, (w, c, rss, k) in med.items():
        rw = f"{w / fw:.2f}" if fw else "-"; rc = f"{c / fc:.2f}" if fc else "-"
        print(f"| {s} | {p} | {w:.2f} | {c:.2f} | {rss:.0f} | {k} ({exp}) | {rw} | {rc} |")
PY
echo "logs: $OUT"
