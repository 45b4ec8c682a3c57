# Peers for ../shared/bench/peers.sh: everything of peers-eden.sh, plus `eden_before`, an
# older build of eden-reconcile run with the same command as `eden`, so that a change's
# before and after come from the same run:
#   EDEN_BIN=$PWD/target/release/eden-reconcile EDEN_BEFORE_BIN=/tmp/eden-before \
#     PEERS_EXTRA=scripts/bench/peers-before.sh PEERS="floor eden_before eden" \
#     RUNS=1 SKIP_SEED=1 ../shared/bench/peers.sh 30000000 0.1
# (sourced by bash, so no shebang)

source "$(dirname "${BASH_SOURCE[0]}")/../../../shared/bench/peers-eden.sh"

EDEN_BEFORE_BIN=${EDEN_BEFORE_BIN:?set EDEN_BEFORE_BIN to the older eden-reconcile}
export OK_EXITS_eden_before="0 1"

cmd_eden_before() {
  local now=$EDEN_BIN
  EDEN_BIN=$EDEN_BEFORE_BIN
  cmd_eden
  EDEN_BIN=$now
}
keys_eden_before() { keys_eden "$@"; }
version_eden_before() { "$EDEN_BEFORE_BIN" --version 2>&1 | head -1; }
