#!/usr/bin/env bash
# Builds the project (npm run build) only when dist/ is missing or older than its sources, so
# that `npm run vbi` (and anything else that needs a current dist/) does not rebuild on every call.
#
# dist/.build-stamp records a successful build: it carries the time the build *started* (taken
# before tsc reads anything, written only after the build succeeded), so a source
# edited during a build, or a failed build, leaves dist/ stale and the next call builds again.
# Sources: everything tsc compiles (the workspaces' src/, scripts/, test/) and the files that steer the build.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=dist/.build-stamp
stale() {
  [ -f "$stamp" ] && [ -f packages/client/dist/src/bin/vbi.js ] || return 0
  [ -n "$(find packages/core packages/client packages/server scripts test tsconfig.json tsconfig.base.json package.json package-lock.json -path '*/dist' -prune -o -newer "$stamp" -print -quit)" ]
}

if stale; then
  started=$(mktemp)
  trap 'rm -f "$started"' EXIT
  npm run --silent build
  touch -r "$started" "$stamp"
fi
