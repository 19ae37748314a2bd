#!/usr/bin/env bash
# The README's first command: set this machine up, then run the controller on the embedded
# SQLite default (data in ./.mesh-data, listening on 127.0.0.1:8080) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/node-env.sh
exec node bin/mesh.js controller start --data-dir "${MESH_DATA_DIR:-$PWD/.mesh-data}" --listen "${MESH_LISTEN:-127.0.0.1:8080}" "$@"
