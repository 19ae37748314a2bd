/**
 * One place where storage failures become MeshErrors, for every adapter:
 *  - A UNIQUE constraint that backs a rule (controller/domain/) becomes that rule's code, so a
 *    race the domain's check did not see (two writers, two controllers) answers as the check
 *    would have. Any other uniqueness collision is WRITE_CONFLICT (try again).
 *  - The host's storage failing (disk full, read-only, gone) becomes STORAGE_FULL or
 *    STORAGE_UNAVAILABLE: 503s the client retries, not 500 INTERNAL with a stack.
 * Adapters say what their driver reported (table and columns of the constraint; the driver's
 * code); the codes come from here.
 */
import {MeshError, isMeshError, type ErrorCode} from '../../shared/errors.js'
import {postgresStorageError} from './postgres/errors.js'
import {sqliteStorageError} from './sqlite/errors.js'

/** table(columns) -> the code of the rule the constraint backs. */
const UNIQUE_RULES: Readonly<Record<string, ErrorCode>> = {
  'tenants(name)': 'TENANT_NAME_TAKEN',
  'users(username)': 'USERNAME_TAKEN',
  'networks(tenant_id,name)': 'NETWORK_NAME_TAKEN',
  'nodes(network_id,name)': 'NODE_NAME_TAKEN',
  'nodes(network_id,public_key)': 'PUBLIC_KEY_TAKEN',
}

/** The MeshError for a violated UNIQUE constraint on `table(columns)`. */
export function uniqueViolation(table: string, columns: readonly string[], cause: unknown): MeshError {
  const code = UNIQUE_RULES[`${table}(${columns.join(',')})`] ?? 'WRITE_CONFLICT'
  return new MeshError(code, {cause})
}

/**
 * The MeshError for a storage failure, or undefined when `err` is something else (a bug, which
 * stays INTERNAL). MeshErrors an adapter already made pass through.
 */
export function storageError(err: unknown): MeshError | undefined {
  if (isMeshError(err) && isStorageErrorCode(err.code)) return err
  return sqliteStorageError(err) ?? postgresStorageError(err)
}

export const isStorageErrorCode = (code: string): boolean =>
  code === 'STORAGE_FULL' || code === 'STORAGE_UNAVAILABLE'

interface MinimalLogger {
  error(obj: object, msg: string): void
}

/**
 * One log line per `intervalMs` for storage failures, with how many were left out since the
 * last one, and no stack: a full disk fails every write, and a stack per request would fill
 * what is left of the disk with the same line.
 */
export class StorageFailureLog {
  private lastAt = -Infinity
  private suppressed = 0

  constructor(
    private readonly log: MinimalLogger,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Logs (or counts) one failure; `where` names what failed (a route, "ephemeral sweep"). */
  report(error: MeshError, where: string): void {
    const t = this.now()
    if (t - this.lastAt < this.intervalMs) {
      this.suppressed++
      return
    }
    // The driver's own code (SQLITE_FULL, a PostgreSQL SQLSTATE), for the operator.
    const driverCode = (error.cause as {code?: unknown} | undefined)?.code
    this.log.error(
      {code: error.code, driverCode, where, suppressed: this.suppressed},
      `${error.message}: writes fail until ${error.code === 'STORAGE_FULL' ? 'space is freed' : 'the disk is fixed'}` +
        (this.suppressed > 0 ? ` (${this.suppressed} more such failures not logged)` : ''),
    )
    this.lastAt = t
    this.suppressed = 0
  }
}
