#!/usr/bin/env bash
# The test command: unit, property, integration (real PostgreSQL) and end-to-end tests of
# the binary, plus doc examples. Starts the services it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh --with-pglogical
scripts/test-deps.sh
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo test --workspace --locked --no-fail-fast "$@"
