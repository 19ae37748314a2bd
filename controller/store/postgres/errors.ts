/**
 * PostgreSQL failures that are the host's or the network's doing, not a bug, and the UNIQUE
 * violations the domain layer maps to its rules: the PostgreSQL counterpart of
 * ../sqlite/errors.ts, for ../errors.ts to call.
 *
 * Which SQLSTATEs (node-postgres puts the server's on `err.code`):
 *  - 53100 disk_full → STORAGE_FULL (503; the transaction rolled back; writes resume once the
 *    server has space).
 *  - Class 08 (connection exception), 57P01/57P02/57P03 (the server shutting down, crashed, or
 *    still starting), 25006 (read-only transaction: a standby after a failover, or
 *    default_transaction_read_only), 53000/53200/53300 (out of resources, memory, connections),
 *    58030 (I/O error) → STORAGE_UNAVAILABLE (503; the client retries).
 *  - A connection that never came up or broke has no SQLSTATE: Node's socket codes (ECONNREFUSED,
 *    ECONNRESET, ...) or node-postgres' own messages ("Connection terminated unexpectedly", a
 *    connect timeout, "not queryable") → STORAGE_UNAVAILABLE.
 *  - 40001 serialization_failure and 40P01 deadlock_detected are not storage failures: see
 *    isPostgresRetryable (WRITE_CONFLICT, or a retry of the transaction).
 * 23xxx constraint violations other than UNIQUE, and everything else, stay what they are (a bug:
 * INTERNAL).
 */
import {MeshError} from '../../../shared/errors.js'

interface PgErrorFields {
  code?: unknown
  constraint?: unknown
  message?: unknown
}

const FULL = new Set(['53100'])
const UNAVAILABLE = new Set(['57P01', '57P02', '57P03', '25006', '53000', '53200', '53300', '58030'])
const SOCKET = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
])
// node-postgres' own words for a connection that is gone (it sets no code on these).
const PG_CONNECTION_GONE =
  /^(Connection terminated|Client has encountered a connection error|Client was closed and is not queryable|timeout exceeded when trying to connect)/

/** The MeshError for a PostgreSQL storage failure, or undefined when `err` is something else. */
export function postgresStorageError(err: unknown): MeshError | undefined {
  const e = err as PgErrorFields | null | undefined
  const code = typeof e?.code === 'string' ? e.code : undefined
  // The driver's code and message stay in `cause` (for the log), off the wire.
  if (code !== undefined && FULL.has(code)) return new MeshError('STORAGE_FULL', {cause: err})
  if (code !== undefined && (UNAVAILABLE.has(code) || code.startsWith('08') || SOCKET.has(code)))
    return new MeshError('STORAGE_UNAVAILABLE', {cause: err})
  if (code === undefined && err instanceof Error && PG_CONNECTION_GONE.test(err.message))
    return new MeshError('STORAGE_UNAVAILABLE', {cause: err})
  return undefined
}

/** True for the failures a transaction may simply run again (serialization, deadlock). */
export const isPostgresRetryable = (err: unknown): boolean => {
  const code = (err as PgErrorFields | null | undefined)?.code
  return code === '40001' || code === '40P01'
}

/**
 * The schema's UNIQUE constraints and primary keys by name (PostgreSQL's default names), as the
 * table(columns) that ../errors.ts maps to rule codes. Read from the constraint name rather than
 * parsed from the error's detail, which is translated (lc_messages) and left out when the user
 * may not read the table. migrations.integration.test.ts checks this table against the catalog
 * of a migrated database: a migration that adds a UNIQUE must add it here.
 */
export const UNIQUE_CONSTRAINTS: Readonly<Record<string, {table: string; columns: readonly string[]}>> = {
  migrations_pkey: {table: 'migrations', columns: ['name']},
  tenants_pkey: {table: 'tenants', columns: ['seq']},
  tenants_id_key: {table: 'tenants', columns: ['id']},
  tenants_name_key: {table: 'tenants', columns: ['name']},
  users_pkey: {table: 'users', columns: ['seq']},
  users_id_key: {table: 'users', columns: ['id']},
  users_username_key: {table: 'users', columns: ['username']},
  tokens_pkey: {table: 'tokens', columns: ['id']},
  tokens_token_hash_key: {table: 'tokens', columns: ['token_hash']},
  networks_pkey: {table: 'networks', columns: ['seq']},
  networks_id_key: {table: 'networks', columns: ['id']},
  networks_tenant_id_name_key: {table: 'networks', columns: ['tenant_id', 'name']},
  network_members_pkey: {table: 'network_members', columns: ['network_id', 'user_id']},
  invites_pkey: {table: 'invites', columns: ['seq']},
  invites_id_key: {table: 'invites', columns: ['id']},
  invites_code_hash_key: {table: 'invites', columns: ['code_hash']},
  auth_keys_pkey: {table: 'auth_keys', columns: ['seq']},
  auth_keys_id_key: {table: 'auth_keys', columns: ['id']},
  auth_keys_key_hash_key: {table: 'auth_keys', columns: ['key_hash']},
  nodes_pkey: {table: 'nodes', columns: ['seq']},
  nodes_id_key: {table: 'nodes', columns: ['id']},
  nodes_credential_hash_key: {table: 'nodes', columns: ['credential_hash']},
  nodes_network_id_name_key: {table: 'nodes', columns: ['network_id', 'name']},
  nodes_network_id_public_key_key: {table: 'nodes', columns: ['network_id', 'public_key']},
  nodes_network_id_address_key: {table: 'nodes', columns: ['network_id', 'address']},
  netmap_changes_pkey: {table: 'netmap_changes', columns: ['network_id', 'version']},
  audit_pkey: {table: 'audit', columns: ['id']},
  readiness_probe_pkey: {table: 'readiness_probe', columns: ['id']},
  connections_pkey: {table: 'connections', columns: ['seq']},
  connections_network_id_node_a_node_b_key: {
    table: 'connections',
    columns: ['network_id', 'node_a', 'node_b'],
  },
  connection_log_pkey: {table: 'connection_log', columns: ['seq']},
  presence_pkey: {table: 'presence', columns: ['node_id', 'replica']},
  login_windows_pkey: {table: 'login_windows', columns: ['source']},
  login_buckets_pkey: {table: 'login_buckets', columns: ['username']},
  login_trusted_pkey: {table: 'login_trusted', columns: ['username', 'source']},
  relay_keys_pkey: {table: 'relay_keys', columns: ['seq']},
  relay_keys_id_key: {table: 'relay_keys', columns: ['id']},
  relay_keys_key_hash_key: {table: 'relay_keys', columns: ['key_hash']},
  relays_pkey: {table: 'relays', columns: ['url']},
  settings_pkey: {table: 'settings', columns: ['name']},
  policies_pkey: {table: 'policies', columns: ['tenant_id']},
  sessions_pkey: {table: 'sessions', columns: ['seq']},
  sessions_id_key: {table: 'sessions', columns: ['id']},
  refresh_tokens_pkey: {table: 'refresh_tokens', columns: ['token_hash']},
  user_mfa_pkey: {table: 'user_mfa', columns: ['user_id']},
  mfa_recovery_codes_pkey: {table: 'mfa_recovery_codes', columns: ['user_id', 'code_hash']},
  user_invites_pkey: {table: 'user_invites', columns: ['seq']},
  user_invites_id_key: {table: 'user_invites', columns: ['id']},
  user_invites_code_hash_key: {table: 'user_invites', columns: ['code_hash']},
  user_identities_pkey: {table: 'user_identities', columns: ['issuer', 'subject']},
  oidc_flows_pkey: {table: 'oidc_flows', columns: ['id_hash']},
}

/**
 * The table and columns of a violated UNIQUE constraint or primary key (SQLSTATE 23505), for
 * ../errors.ts uniqueViolation(); undefined for anything else, or a constraint not in the schema.
 */
export function postgresUniqueViolation(err: unknown): {table: string; columns: string[]} | undefined {
  const e = err as PgErrorFields | null | undefined
  if (e?.code !== '23505' || typeof e.constraint !== 'string') return undefined
  const c = UNIQUE_CONSTRAINTS[e.constraint]
  return c && {table: c.table, columns: [...c.columns]}
}
