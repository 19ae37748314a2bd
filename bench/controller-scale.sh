#!/usr/bin/env bash
# Runs bench/controller-scale.mjs on the pinned Node with the open-file limit raised to the hard
# limit: N netmap WebSockets need N descriptors in this process and N in the controller.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -f dist/cli/commands/controller/start.js ] || { echo "run 'npm run build' first" >&2; exit 1; }
exec node bench/controller-scale.mjs "$@"
