#!/usr/bin/env bash
# The test command (README: `npm test`): build, type-check, lint, format check, freshness of
# generated files, then every vitest project. Root-only end-to-end tests run when this runs
# as root with wireguard-go and iproute2 installed (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
[ -d node_modules ] || npm ci --no-fund --no-audit
# Generated files must be committed fresh: keep the tree's copies, rebuild, compare.
before="$(mktemp -d)"
trap 'rm -rf "$before"' EXIT
cp -r oclif.manifest.json man completions "$before"/ 2>/dev/null || true
bash scripts/build.sh
for f in oclif.manifest.json man completions; do
  if ! diff -r "$before/$f" "$f" >/dev/null 2>&1; then
    echo "stale generated file(s): $f differs from what the build writes; run 'npm run build' and commit" >&2
    diff -r "$before/$f" "$f" | head -20 >&2 || true
    exit 1
  fi
done
tsc -p tsconfig.check.json
eslint --max-warnings 0 .
prettier --check . >/dev/null || { prettier --check . ; exit 1; }
# vitest's own summary is for people; the last line is the plain "N passed, N failed" count.
report="$(mktemp)"
trap 'rm -rf "$before" "$report"' EXIT
status=0
vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
node -e '
const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"))
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`)
' "$report" || true
exit "$status"
