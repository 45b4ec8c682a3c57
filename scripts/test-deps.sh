#!/usr/bin/env bash
# Installs the tools the tests run for real, when missing (Debian packages, quietly):
#   promtool               (package prometheus): checks the metrics files and deploy/ rules
#   prometheus-pushgateway (package prometheus-pushgateway): receives --metrics-push
# Safe to run again; fails loudly when a package cannot be installed.
set -euo pipefail

say() { echo "test-deps: $*" >&2; }

missing=()
[ -x /usr/bin/promtool ] || missing+=(prometheus)
[ -x /usr/bin/prometheus-pushgateway ] || missing+=(prometheus-pushgateway)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: only the binaries; the packages' services are not started
  # in containers (policy-rc.d) and the tests start their own Pushgateway.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x /usr/bin/promtool ] || { say "FAILED: /usr/bin/promtool is missing after installing prometheus"; exit 1; }
[ -x /usr/bin/prometheus-pushgateway ] || { say "FAILED: /usr/bin/prometheus-pushgateway is missing after installing prometheus-pushgateway"; exit 1; }
say "promtool and prometheus-pushgateway are installed"
