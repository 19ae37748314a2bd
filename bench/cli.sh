#!/usr/bin/env bash
# Runs bench/cli.mjs on the pinned Node (see that file for what it measures). As root it starts
# a meshd in a namespace of its own for the `status --json` row.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
[ -f dist/bundle/oclif.manifest.json ] || { echo "run 'npm run build' first" >&2; exit 1; }
exec node bench/cli.mjs "$@"
