/**
 * The audit log as a hash chain, one chain per tenant (entries of no tenant form the chain '').
 *
 * Every audited write appends its entry through appendAudit, inside the write's transaction:
 * under the chain's lock it takes the chain's newest link, numbers the entry one above it and
 * stores `hash = SHA-256(prev_hash, number, every stored field)`. verifyAuditChain recomputes the
 * chain from the first link and names the first entry that does not match:
 *  - `changed`: the entry's fields (or its hash) were altered after it was written;
 *  - `unlinked`: its prev_hash is not the hash of the link before it (an entry before it was
 *    altered and re-hashed, or removed and the rest re-linked);
 *  - `gap`: numbers are missing before it (entries were deleted).
 * What a chain cannot show by itself: entries removed from its end, or a chain rewritten as a
 * whole from some point on by someone holding the database. For those, keep the head (number
 * and hash, printed by `mesh audit verify`) somewhere else: a later head must extend it.
 *
 * The hash input is a JSON array of the fields in a fixed order, each as stored (detail is the
 * stored JSON text, not re-serialised), so verification never depends on how a driver or a
 * JSON library formats values.
 */
import {createHash} from 'node:crypto'
import type {AuditContext, AuditRecord, AuditRow, StoredAuditRow, Store, Tx} from '../store/store.js'

/** Changes whenever what is hashed changes; old links keep verifying under their own version. */
const HASH_VERSION = 'mesh-audit-1'

/** The chain an entry of `tenantId` belongs to. */
export const auditChainOf = (tenantId: string | null): string => tenantId ?? ''

/** The hash of one link: over the link before it, its number and every stored field. */
export function auditLinkHash(row: Omit<AuditRow, 'hash'>): string {
  const fields = [
    HASH_VERSION,
    row.prevHash,
    row.chain,
    row.chainSeq,
    row.at,
    row.tenantId,
    row.actor,
    row.actorName,
    row.action,
    row.targetType,
    row.targetId,
    row.networkId,
    row.sourceAddress,
    row.requestId,
    row.detail,
  ]
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex')
}

/** Appends one entry as the next link of its tenant's chain (inside the caller's transaction). */
export async function appendAudit(tx: Tx, ctx: AuditContext, e: AuditRecord): Promise<void> {
  const chain = auditChainOf(e.tenantId)
  await tx.lockAuditChain(chain)
  const last = await tx.lastAuditLink(chain)
  const link: Omit<AuditRow, 'hash'> = {
    at: ctx.at,
    tenantId: e.tenantId,
    actor: ctx.actor,
    actorName: ctx.actorName,
    action: e.action,
    targetType: e.targetType,
    targetId: e.targetId,
    networkId: e.networkId,
    sourceAddress: ctx.sourceAddress,
    requestId: ctx.requestId,
    detail: JSON.stringify(e.detail ?? {}),
    chain,
    chainSeq: (last?.seq ?? 0) + 1,
    prevHash: last?.hash ?? '',
  }
  await tx.insertAudit({...link, hash: auditLinkHash(link)})
}

export type AuditMismatchReason = 'changed' | 'unlinked' | 'gap'

export interface AuditVerification {
  readonly ok: boolean
  /** Links checked (up to and including the first mismatch). */
  readonly checked: number
  /** Entries written before the chain existed, which it does not cover. */
  readonly unchained: number
  /** The newest link that verified; null for an empty chain. */
  readonly head: {readonly id: number; readonly seq: number; readonly hash: string} | null
  readonly mismatch?: {
    readonly id: number
    readonly seq: number
    readonly reason: AuditMismatchReason
    readonly message: string
  }
}

const MESSAGES: Record<AuditMismatchReason, (r: StoredAuditRow, expectedSeq: number) => string> = {
  changed: (r) =>
    `entry ${r.id} (link ${r.chainSeq}) was changed after it was written: its hash does not match`,
  unlinked: (r) =>
    `entry ${r.id} (link ${r.chainSeq}) does not follow the link before it: an earlier entry was changed or removed`,
  gap: (r, expected) =>
    `entry ${r.id} is link ${r.chainSeq} where link ${expected} was expected: entries before it were removed`,
}

/**
 * Recomputes the tenant's chain from its first link, reading `pageSize` links at a time (memory
 * stays bounded whatever the log's length), and stops at the first link that does not match.
 */
export async function verifyAuditChain(
  store: Pick<Store, 'auditLinks' | 'countUnchainedAudit'>,
  tenantId: string | null,
  opts: {pageSize?: number} = {},
): Promise<AuditVerification> {
  const chain = auditChainOf(tenantId)
  const pageSize = opts.pageSize ?? 1000
  const unchained = await store.countUnchainedAudit(tenantId)
  let prev: StoredAuditRow | undefined
  let checked = 0
  const head = () => (prev ? {id: prev.id, seq: prev.chainSeq, hash: prev.hash} : null)
  for (;;) {
    const rows = await store.auditLinks(chain, prev?.chainSeq ?? 0, pageSize)
    for (const row of rows) {
      checked++
      const expectedSeq = (prev?.chainSeq ?? 0) + 1
      const reason: AuditMismatchReason | undefined =
        row.chainSeq !== expectedSeq
          ? 'gap'
          : row.prevHash !== (prev?.hash ?? '')
            ? 'unlinked'
            : auditLinkHash(row) !== row.hash
              ? 'changed'
              : undefined
      if (reason) {
        return {
          ok: false,
          checked,
          unchained,
          head: head(),
          mismatch: {id: row.id, seq: row.chainSeq, reason, message: MESSAGES[reason](row, expectedSeq)},
        }
      }
      prev = row
    }
    // Each page starts above the last link read, so the loop ends after ceil(links / pageSize)
    // pages: the numbers it asks for only grow.
    if (rows.length < pageSize) break
  }
  return {ok: true, checked, unchained, head: head()}
}
