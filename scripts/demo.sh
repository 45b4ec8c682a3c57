#!/usr/bin/env bash
# The main job on a fresh machine: builds eden-reconcile, creates two local region databases
# (us-east-1 and us-west-2) from fixtures/demo with a little drift of each kind, then runs
# check, fix --dry-run, fix, check again and conflicts, showing what an operator sees.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo build --release --locked -p eden-reconcile-cli
BIN=target/release/eden-reconcile
CONFIG=fixtures/demo/postgresql-multi-region.yaml
export PGUSER=${PGUSER:-postgres}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432)
export PGOPTIONS="-c client_min_messages=warning"

for region in us-east-1 us-west-2; do
  db=eden_demo_${region//-/_}
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  "${PSQL[@]}" -d "$db" -f fixtures/demo/schema.sql
  "${PSQL[@]}" -d "$db" -f "fixtures/demo/drift-$region.sql"
done
unset PGOPTIONS

# Bold only on a terminal (and not with NO_COLOR): piped output stays plain text.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
else
  step() { printf '\n$ %s\n' "$*"; }
fi
run() { step "eden-reconcile $*"; "$BIN" --config "$CONFIG" "$@" || echo "(exit code $?)"; }

run init --db eden_vault
run check --db eden_vault
run check --db eden_vault --table vault_secrets --format json
run fix --db eden_vault --dry-run
run fix --db eden_vault
run check --db eden_vault
run conflicts --db eden_vault --limit 15
scripts/demo-redis.sh
