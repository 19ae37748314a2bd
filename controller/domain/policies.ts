/**
 * The rule for storing a tenant's ACL policy (issue 10): a document is stored only when it
 * parses, names nothing unknown and passes its own embedded tests; a change may name the version
 * it was made from (a concurrent change then refuses it instead of being lost); every change is
 * audited with a diff. Runs inside store.write(), under the tenant's lock, so two replicas
 * setting a policy at once number their versions one after the other.
 */
import {MeshError} from '../../shared/errors.js'
import {checkPolicy} from '../../shared/policy/check.js'
import {policyDiff} from '../../shared/policy/index.js'
import type {AuditContext, PolicyRecord, Tx} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'

/** Stores `document` as the tenant's policy after checkPolicy; returns the stored record. */
export async function setPolicy(
  tx: Tx,
  tenantId: string,
  document: string,
  opts: {ifVersion?: number | undefined; userId: string; users?: readonly string[] | undefined},
  ctx: AuditContext,
): Promise<PolicyRecord> {
  checkPolicy(document, {users: opts.users})
  if (!(await tx.lockTenant(tenantId))) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
  const current = await tx.getPolicy(tenantId)
  const version = current?.version ?? 0
  if (opts.ifVersion !== undefined && opts.ifVersion !== version) {
    throw new MeshError('POLICY_VERSION_CONFLICT', {
      message: `the policy is at version ${version}, not ${opts.ifVersion}`,
      detail: {version},
    })
  }
  if (current && current.document === document) return current
  const record: PolicyRecord = {
    tenantId,
    document,
    version: version + 1,
    updatedAt: ctx.at,
    updatedBy: opts.userId,
  }
  await tx.putPolicy(record)
  await chainAudit(tx, ctx, {
    tenantId,
    action: 'policy.set',
    targetType: 'policy',
    targetId: null,
    networkId: null,
    detail: {version: record.version, from: version, diff: policyDiff(current?.document ?? null, document)},
  })
  return record
}

/** Removes the tenant's policy: every node of a network may reach every other again. */
export async function deletePolicy(tx: Tx, tenantId: string, ctx: AuditContext): Promise<boolean> {
  if (!(await tx.lockTenant(tenantId))) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
  const current = await tx.getPolicy(tenantId)
  if (!current) return false
  await tx.deletePolicy(tenantId)
  await chainAudit(tx, ctx, {
    tenantId,
    action: 'policy.delete',
    targetType: 'policy',
    targetId: null,
    networkId: null,
    detail: {version: current.version, diff: policyDiff(current.document, '')},
  })
  return true
}
