#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh machine, and nothing when it is already there:
# node modules (npm ci when package-lock.json is newer than the installed tree) and Debian packages
# (kcat for the Kafka-protocol test broker, docker-compose to validate the compose stack, chromium for the
# dashboard test; redis-server and mariadb-server only when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "provision: need root for: $*" >&2; return 1; fi; }

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "provision: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

missing=()
command -v kcat >/dev/null || missing+=(kcat)
# stunnel terminates TLS in front of the test broker (the Kafka client over TLS).
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || missing+=(stunnel4)
command -v redis-server >/dev/null || missing+=(redis-server)
# docker-compose (v1) validates infra/compose without a Docker engine; chromium drives the dashboard test.
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v chromium >/dev/null || missing+=(chromium)
# wrk is the load tool of the read API benchmark (C: it leaves the cores to the API).
command -v wrk >/dev/null || missing+=(wrk)
if [ "${CELLAR_SKIP_MARIADB:-}" != 1 ]; then
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "provision: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool checks the Prometheus alert rules (test/infra). Only the tool is taken from Debian's prometheus
# package (installing the package would also set up a Prometheus server); best effort: the test says when
# it is missing.
if ! command -v promtool >/dev/null && [ "${CELLAR_SKIP_PROMTOOL:-}" != 1 ]; then
  echo "provision: promtool from Debian's prometheus package"
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb root) && [ -x "$tmp/root/usr/bin/promtool" ]; then
    as_root install -m 0755 "$tmp/root/usr/bin/promtool" /usr/local/bin/promtool || true
  else
    echo "provision: promtool unavailable; the alert-rule unit tests will be skipped" >&2
  fi
  rm -rf "$tmp"
fi
