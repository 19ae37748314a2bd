/**
 * Protocol versions of mesh's two contracts. Bump when a contract changes; say what changed.
 *
 * History:
 *  - 1: 2026-11: controller REST /api/v1 + netmap WebSocket (full, then deltas, resume by version);
 *       CLI <-> meshd local API v1 (status, join, up, down, leave, ip).
 */
export const PROTOCOL_VERSION = 1

/** HTTP header that carries PROTOCOL_VERSION on the daemon socket. */
export const PROTOCOL_HEADER = 'mesh-api'
