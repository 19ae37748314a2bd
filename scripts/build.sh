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
# oclif writes commands in the order its loader finishes them, which varies between runs: sort
# them so the checked-in manifest is reproducible and the freshness check cannot flake.
node -e '
const fs = require("node:fs")
const m = JSON.parse(fs.readFileSync("oclif.manifest.json", "utf8"))
m.commands = Object.fromEntries(Object.entries(m.commands).sort(([a], [b]) => a.localeCompare(b)))
fs.writeFileSync("oclif.manifest.json", JSON.stringify(m, null, 2) + "\n")
'
if [ -f dist/scripts/gen-docs.js ]; then node dist/scripts/gen-docs.js; fi
# The bundled CLI that bin/mesh.js runs (start-up time; see scripts/bundle.mjs).
node scripts/bundle.mjs
