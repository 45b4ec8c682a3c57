#!/usr/bin/env bash
# Makes sure the local services the demo and the tests need are up: PostgreSQL 15 on
# 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379. Starts what is down; fails
# loudly when it cannot. Safe to run again. `--with-pglogical` also installs pglogical
# (the test script asks for it; the demo does not need it).
set -euo pipefail

say() { echo "services: $*" >&2; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1; then
  say "PostgreSQL client tools are missing; installing postgresql-15"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq -o Dpkg::Use-Pty=0 postgresql-15 >/dev/null 2>&1
fi
# pglogical: only the replication tests (eden-consistency/tests/it/pglogical.rs,
# tests/e2e/pglogical.rs) need it; scripts/test.sh asks for it with --with-pglogical (the
# demo does not).
if [ "${1:-}" = "--with-pglogical" ] && [ ! -f /usr/lib/postgresql/15/lib/pglogical.so ]; then
  say "pglogical is missing; installing postgresql-15-pglogical"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq -o Dpkg::Use-Pty=0 postgresql-15-pglogical >/dev/null 2>&1
  [ -f /usr/lib/postgresql/15/lib/pglogical.so ] \
    || { say "FAILED: postgresql-15-pglogical did not provide /usr/lib/postgresql/15/lib/pglogical.so"; exit 1; }
fi
# Shells and groff: tests/e2e/shell.rs checks the completion scripts with bash, zsh and fish
# and the manual pages with groff, and fails without them.
missing=()
for tool in zsh:zsh fish:fish groff:groff; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (completion and manual page tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! pg_up; then
  say "PostgreSQL is not answering on 127.0.0.1:5432; starting the 15/main cluster"
  pg_ctlcluster --skip-systemctl-redirect 15 main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { say "FAILED: PostgreSQL does not answer on 127.0.0.1:5432"; exit 1; }
fi
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'SELECT 1' >/dev/null \
  || { say "FAILED: cannot log in to PostgreSQL as postgres on 127.0.0.1:5432"; exit 1; }

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if command -v redis-server >/dev/null 2>&1; then
  if ! redis_up; then
    say "Redis is not answering on 127.0.0.1:6379; starting it"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
    redis_up || { say "FAILED: Redis does not answer on 127.0.0.1:6379"; exit 1; }
  fi
fi

# Throwaway clusters for tests run initdb as the OS user postgres.
id postgres >/dev/null 2>&1 || { say "FAILED: there is no OS user 'postgres' to run initdb"; exit 1; }
[ -x /usr/lib/postgresql/15/bin/initdb ] || { say "FAILED: /usr/lib/postgresql/15/bin/initdb is missing"; exit 1; }
say "PostgreSQL and Redis are up"
