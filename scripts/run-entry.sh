#!/bin/sh
# `npm run api | worker | db:migrate`: with NODE_ENV=production, the compiled build under plain
# node (run `npm run build` first); otherwise the TypeScript sources through tsx.
#   sh scripts/run-entry.sh src/server [args…]
set -eu
entry=$1
shift
if [ "${NODE_ENV:-}" = production ]; then
  if [ ! -f "dist/$entry.js" ]; then
    echo "dist/$entry.js is missing: run \`npm run build\` first (NODE_ENV=production runs the build)" >&2
    exit 1
  fi
  exec node "dist/$entry.js" "$@"
fi
exec tsx "$entry.ts" "$@"
