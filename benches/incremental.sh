#!/usr/bin/env bash
# Full check vs incremental re-check after 0.1 % of the rows changed (docs/incremental.md).
#
#   benches/incremental.sh [ROWS]     (default 10000000)
#
# Uses two databases on the local server (127.0.0.1:5432, user postgres):
# eden_bench_inc_east and eden_bench_inc_west (SEED=1 (re)creates them with ROWS rows of the
# bench table of /work/shared/bench/seed.sh plus an index on last_updated_at; about 2.7 GB
# each at 10M rows; DROP=1 drops them at the end; E=... W=... name other databases). Needs
# target/release/eden-reconcile (or BIN=...). Prints wall time and peak RSS
# (/usr/bin/time -v) per run, the differences found and the incremental figures.
set -euo pipefail
N=${1:-10000000}
BIN=${BIN:-target/release/eden-reconcile}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
E=${E:-eden_bench_inc_east} W=${W:-eden_bench_inc_west}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "${SEED:-0}" = 1 ]; then
  for db in $E $W; do
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    "${PSQL[@]}" -d $db <<SQL &
CREATE TABLE vault_secrets(id bigint, tenant_id uuid, path text, secret bytea, version int,
  metadata jsonb, last_updated_at timestamptz NOT NULL);
INSERT INTO vault_secrets
SELECT 2*g, md5('tenant-' || (g % 500))::uuid,
       'kv/tenant-' || (g % 500) || '/app-' || (g % 37) || '/' || substr(md5('p' || g), 1, 16),
       decode(md5('s1-' || g) || md5('s2-' || g), 'hex'), 1 + (g % 7),
       jsonb_build_object('owner', 'svc-' || (g % 97), 'rotation_days', 30 + (g % 60),
                          'tags', jsonb_build_array('env-' || (g % 3), 'tier-' || (g % 5))),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, $N) AS g;
ALTER TABLE vault_secrets ADD PRIMARY KEY (id);
CREATE INDEX ON vault_secrets(last_updated_at);
VACUUM ANALYZE vault_secrets;
SQL
  done
  wait
fi

cat >"$work/config.yaml" <<YAML
global:
  conflict_resolution: last_write_wins
regions:
  - name: east
    instance: { host: 127.0.0.1, port: 5432 }
  - name: west
    instance: { host: 127.0.0.1, port: 5432 }
replication:
  node_groups:
    - name: bench
      database: bench
      conflict_resolution_tables:
        - { table: vault_secrets, resolution: last_write_wins, tracking_column: last_updated_at }
YAML
run() {  # run LABEL ARGS...: prints wall seconds, peak RSS and the table's incremental figures
  local label=$1; shift
  /usr/bin/time -v -o "$work/time.txt" "$BIN" --config "$work/config.yaml" check --db bench \
    --region east=postgres://postgres@127.0.0.1:5432/$E --region west=postgres://postgres@127.0.0.1:5432/$W \
    --format json "$@" >"$work/out.json" 2>"$work/err.log" || [ $? -eq 1 ]
  printf '%-34s %s  %s\n' "$label" \
    "$(python3 -c 'import re,sys; t=open(sys.argv[1]).read(); w=re.search(r"Elapsed \(wall clock\) time.*: (\S+)", t).group(1).split(":"); s=sum(float(x)*60**i for i,x in enumerate(reversed(w))); r=int(re.search(r"Maximum resident set size.*: (\d+)", t).group(1)); print("%7.2f s %5d MiB" % (s, r//1024))' "$work/time.txt")" \
    "$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tables"][0]; i=t.get("incremental") or {}; print("differences", t["difference_count"], "rehashed", i.get("chunks_rehashed"), "of", i.get("chunks_total"), "count ranges", i.get("count_ranges"), "refined", i.get("count_ranges_refined"), "full" if i.get("full_pass") else "")' "$work/out.json")"
}
state="$work/state.json"
run "full check"
run "incremental, first (full) pass" --incremental --state "$state"
# 0.1 % of the rows change in both regions alike (replicated writes): one in every 1000;
# 20 rows deleted and 10 inserted in both; 5 rows inserted in east only with an old
# tracking value (a restore: found only by the count ranges). The same tracking values in
# both regions, as replication would write them.
ts=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
r1=$(( (RANDOM * 32768 + RANDOM) % 500000 * 2 )) r2=$(( (RANDOM * 32768 + RANDOM) % 1000000 * 2 ))
for db in $E $W; do
  "${PSQL[@]}" -d $db -c "UPDATE vault_secrets SET version = version + 1, last_updated_at = timestamptz '$ts' + id * interval '1 microsecond' WHERE id % 2000 = 0" \
    -c "DELETE FROM vault_secrets WHERE id % 1000000 = $r1" \
    -c "INSERT INTO vault_secrets SELECT id + 3, tenant_id, path, secret, version, metadata, timestamptz '$ts' FROM vault_secrets WHERE id % 2000000 = $r2 ON CONFLICT DO NOTHING" &
done
wait
"${PSQL[@]}" -d $E -c "INSERT INTO vault_secrets SELECT id + 5, tenant_id, path, secret, version, metadata, last_updated_at FROM vault_secrets WHERE id % 4000000 = $r2 + 2 ON CONFLICT DO NOTHING"
run "incremental after 0.1 % changed" --incremental --state "$state"
run "full check, same data"
for db in $E $W; do "${PSQL[@]}" -d $db -c "VACUUM vault_secrets" & done; wait
run "incremental again, after VACUUM" --incremental --state "$state"
run "full check"
if [ "${DROP:-0}" = 1 ]; then
  for db in $E $W; do "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done
fi
