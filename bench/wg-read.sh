#!/usr/bin/env bash
# Runs bench/wg-read.mjs on the pinned Node (as root; see that file for what it measures).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
exec node bench/wg-read.mjs "$@"
