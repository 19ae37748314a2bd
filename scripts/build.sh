#!/usr/bin/env bash
# Compiles TypeScript to dist/ and regenerates the artefacts that derive from the code:
# oclif.manifest.json, man pages and shell completions. Each is checked in and a test fails
# when the checked-in copy is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
# dist/ is not wiped: parallel runs (lab, tests) load it; CI builds from a clean clone.
tsc -p tsconfig.json
oclif manifest >/dev/null
if [ -f dist/scripts/gen-docs.js ]; then node dist/scripts/gen-docs.js; fi
