#!/usr/bin/env bash
# Runs bench/nat-vs-nebula.mjs on the pinned Node (as root; see that file for what it measures).
# Installs Nebula (Debian package `nebula`) when it is missing and we may.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
if ! command -v nebula >/dev/null 2>&1 || ! command -v nebula-cert >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing nebula" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nebula >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nebula >/dev/null; }
  else
    echo "bench: nebula is not installed (apt-get install nebula); run with --no-nebula to skip it" >&2
  fi
fi
[ -f dist/cli/lib/lab/lab.js ] || { echo "run 'npm run build' first" >&2; exit 1; }
exec node bench/nat-vs-nebula.mjs "$@"
