/**
 * Node registration and node changes: the rules, run inside store.write(tx => ...).
 *
 * Registration takes the network's row lock before it decides anything that depends on the
 * network's other rows (the invite's or key's use count, max nodes, the public key, the name,
 * the address), so two controllers registering into one network at once take turns; the
 * UNIQUE constraints on (network, name|public key|address) back it. Every change a peer can see
 * bumps the network's netmap version and logs the node in the change log.
 */
import type {NodeStatus} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import {parseCidr} from '../../shared/net/ipv4.js'
import {sameNat, type NatBehaviour} from '../../shared/nat/behaviour.js'
import type {AuditContext, JoinProof, NewNode, NodeChange, StoredNode, Tx} from '../store/store.js'
import {allocateAddress} from './ipam.js'
import {candidatePrefix, freeName} from './names.js'
import {appendAudit as chainAudit} from './audit.js'

/** Change-log rows kept per network for resume-by-version; older resumes get a full map. */
export const CHANGE_LOG_KEEP = 10_000
/** The change log is trimmed every this many versions (not on every change). */
const CHANGE_LOG_TRIM_EVERY = 1_000

/** Bumps the netmap version for a change of `nodeId` and trims the change log now and then. */
async function bump(tx: Tx, networkId: string, nodeId: string, kind: NodeChange['kind']): Promise<number> {
  const version = await tx.bumpNetmap(networkId, nodeId, kind)
  if (version % CHANGE_LOG_TRIM_EVERY === 0) await tx.trimChangeLog(networkId, version - CHANGE_LOG_KEEP)
  return version
}

interface Admission {
  readonly networkId: string
  readonly preApproved: boolean
  readonly ephemeral: boolean
  readonly tags: readonly string[]
  /** Who let the node in: the registering user, or the invite's or auth key's creator. */
  readonly ownerId: string | null
  readonly via: Record<string, unknown>
}

/** The network a proof points at, read before any lock (the decision comes after it). */
async function proofNetwork(tx: Tx, proof: JoinProof): Promise<string> {
  if (proof.kind === 'open') return proof.networkId
  if (proof.kind === 'invite') {
    const inv = await tx.inviteByCode(proof.codeHash)
    if (!inv) throw new MeshError('INVITE_INVALID')
    return inv.networkId
  }
  const key = await tx.authKeyByHash(proof.keyHash)
  if (!key) throw new MeshError('AUTHKEY_INVALID')
  return key.networkId
}

/**
 * Checks the proof and counts its use. Runs under the network's lock and reads the invite or
 * key again there, so a single-use secret can be used once however many controllers race.
 */
async function admit(tx: Tx, proof: JoinProof, now: string): Promise<Admission> {
  if (proof.kind === 'invite') {
    const inv = await tx.inviteByCode(proof.codeHash)
    if (!inv) throw new MeshError('INVITE_INVALID')
    if (inv.revokedAt !== null) throw new MeshError('INVITE_REVOKED')
    if (inv.expiresAt <= now) throw new MeshError('INVITE_EXPIRED')
    if (inv.maxUses !== null && inv.uses >= inv.maxUses) throw new MeshError('INVITE_USED_UP')
    await tx.countInviteUse(inv.id)
    return {
      networkId: inv.networkId,
      preApproved: false,
      ephemeral: false,
      tags: [],
      ownerId: inv.createdBy,
      via: {invite: inv.id},
    }
  }
  if (proof.kind === 'authkey') {
    const key = await tx.authKeyByHash(proof.keyHash)
    if (!key) throw new MeshError('AUTHKEY_INVALID')
    if (key.revokedAt !== null) throw new MeshError('AUTHKEY_REVOKED')
    if (key.expiresAt <= now) throw new MeshError('AUTHKEY_EXPIRED')
    if (!key.reusable && key.uses >= 1) throw new MeshError('AUTHKEY_USED')
    await tx.countAuthKeyUse(key.id)
    return {
      networkId: key.networkId,
      preApproved: key.preApproved,
      ephemeral: key.ephemeral,
      tags: key.tags,
      ownerId: key.createdBy,
      via: {authKey: key.id, preApproved: key.preApproved},
    }
  }
  return {
    networkId: proof.networkId,
    preApproved: false,
    ephemeral: false,
    tags: [],
    ownerId: proof.userId ?? null,
    via: {open: true},
  }
}

/**
 * Registers a node: checks the invite or auth key (INVITE_* / AUTHKEY_*), counts a use,
 * enforces max nodes, picks a unique name (web, web-2, ...) and an address (ipam.ts), inserts
 * the node and bumps the netmap version.
 */
export async function registerNode(
  tx: Tx,
  proof: JoinProof,
  node: NewNode,
  ctx: AuditContext,
): Promise<NodeChange> {
  const net = await tx.lockNetwork(await proofNetwork(tx, proof))
  if (!net) throw new MeshError('NOT_FOUND', {message: 'network not found'})
  const admission = await admit(tx, proof, ctx.at)
  // Under the approval policy a node waits for an admin unless its auth key was pre-approved.
  const status: NodeStatus = net.joinPolicy === 'approval' && !admission.preApproved ? 'pending' : 'active'
  if (net.maxNodes !== null && net.nodeCount >= net.maxNodes) {
    throw new MeshError('NETWORK_MAX_NODES', {message: `the network is limited to ${net.maxNodes} nodes`})
  }
  if (await tx.publicKeyTaken(net.id, node.publicKey)) throw new MeshError('PUBLIC_KEY_TAKEN')
  const name = (await tx.nodeNameTaken(net.id, node.name))
    ? freeName(node.name, new Set(await tx.nodeNamesWithPrefix(net.id, candidatePrefix(node.name))))
    : node.name
  const cidr = parseCidr(net.cidr)
  if (!cidr) throw new Error(`stored CIDR ${net.cidr} does not parse`)
  const address = await allocateAddress({
    cidr,
    cursor: net.ipamCursor,
    used: net.nodeCount,
    addressesFrom: (from, limit) => tx.nodeAddressesFrom(net.id, from, limit),
  })
  await tx.setIpamCursor(net.id, address)
  const keyExpiresAt = await keyExpiryFor(tx, net.tenantId, admission.tags, ctx.at)
  const stored = await tx.insertNode({
    id: node.id,
    networkId: net.id,
    name,
    hostname: node.hostname,
    os: node.os,
    publicKey: node.publicKey,
    address,
    credentialHash: node.credentialHash,
    status,
    endpoints: node.endpoints,
    tags: admission.tags,
    ephemeral: admission.ephemeral,
    ownerId: admission.ownerId,
    keyExpiresAt,
    at: ctx.at,
  })
  const version = await bump(tx, net.id, node.id, 'added')
  await chainAudit(tx, ctx, {
    tenantId: net.tenantId,
    action: 'node.register',
    targetType: 'node',
    targetId: node.id,
    networkId: net.id,
    detail: {name, address: stored.address, publicKey: node.publicKey, status, ...admission.via},
  })
  return {
    networkId: net.id,
    tenantId: net.tenantId,
    version,
    nodeId: node.id,
    kind: 'added',
    node: stored,
    before: null,
  }
}

/**
 * One node change under its network's lock: `change` writes and returns the audit detail (or
 * undefined: nothing changed, nothing is written); then the version bump and, unless `action`
 * is null (telemetry), the audit entry.
 */
async function mutateNode(
  tx: Tx,
  id: string,
  ctx: AuditContext | null,
  action: string | null,
  change: (before: StoredNode) => Promise<Record<string, unknown> | undefined>,
): Promise<NodeChange | undefined> {
  const found = await tx.getNode(id)
  if (!found) throw new MeshError('NOT_FOUND', {message: 'node not found'})
  const net = await tx.lockNetwork(found.networkId)
  // Read again under the lock: another writer may have changed or removed it meanwhile.
  const before = net && (await tx.getNode(id))
  if (!net || !before) throw new MeshError('NOT_FOUND', {message: 'node not found'})
  const detail = await change(before)
  if (detail === undefined) return undefined
  const after = await tx.getNode(id)
  const version = await bump(tx, net.id, id, after ? 'changed' : 'removed')
  if (action !== null && ctx !== null)
    await chainAudit(tx, ctx, {
      tenantId: net.tenantId,
      action,
      targetType: 'node',
      targetId: id,
      networkId: net.id,
      detail,
    })
  return {
    networkId: net.id,
    tenantId: net.tenantId,
    version,
    nodeId: id,
    kind: after ? 'changed' : 'removed',
    node: after ?? null,
    before,
  }
}

export async function approveNode(tx: Tx, id: string, ctx: AuditContext): Promise<NodeChange> {
  return (await mutateNode(tx, id, ctx, 'node.approve', async (before) => {
    if (before.status !== 'pending') throw new MeshError('NODE_NOT_PENDING')
    await tx.updateNode(id, {status: 'active'})
    return {name: before.name}
  })) as NodeChange
}

export async function renameNode(tx: Tx, id: string, name: string, ctx: AuditContext): Promise<NodeChange> {
  return (await mutateNode(tx, id, ctx, 'node.rename', async (before) => {
    if (name !== before.name && (await tx.nodeNameTaken(before.networkId, name))) {
      throw new MeshError('NODE_NAME_TAKEN', {message: `a node named ${name} already exists in the network`})
    }
    await tx.updateNode(id, {name})
    return {name, previousName: before.name}
  })) as NodeChange
}

/** Audited as `action`: node.remove (an admin or the reaper) or node.leave (the node itself). */
export async function removeNode(
  tx: Tx,
  id: string,
  ctx: AuditContext,
  action: 'node.remove' | 'node.leave' = 'node.remove',
): Promise<NodeChange> {
  return (await mutateNode(tx, id, ctx, action, async (before) => {
    await tx.deleteNode(id)
    return {name: before.name, address: before.address, publicKey: before.publicKey}
  })) as NodeChange
}

/**
 * The node's reported endpoints. Undefined when they did not change (nothing written). Bumps the
 * netmap version but writes no audit entry: endpoints are node telemetry, not an administrative
 * change.
 */
export async function setNodeEndpoints(
  tx: Tx,
  id: string,
  endpoints: readonly string[],
  at: string,
): Promise<NodeChange | undefined> {
  return mutateNode(tx, id, null, null, async (before) => {
    if (JSON.stringify(before.endpoints) === JSON.stringify(endpoints)) return undefined
    await tx.updateNode(id, {endpoints, lastSeen: at})
    return {endpoints}
  })
}

/**
 * The public mapping observed on the discovery port (null: none). Kept apart from the reported
 * endpoints, which it never touches (and setNodeEndpoints never touches it). Like
 * setNodeEndpoints: undefined when unchanged, bumps the netmap version, no audit entry.
 */
export async function setNodeObservedEndpoint(
  tx: Tx,
  id: string,
  endpoint: string | null,
): Promise<NodeChange | undefined> {
  return mutateNode(tx, id, null, null, async (before) => {
    if ((before.observedEndpoint ?? null) === endpoint) return undefined
    await tx.updateNode(id, {observedEndpoint: endpoint})
    return {observedEndpoint: endpoint}
  })
}

/**
 * The NAT behaviour the node's netcheck measured (RFC 4787 mapping and filtering), as it reported
 * it over its netmap session. Like setNodeObservedEndpoint: undefined when unchanged (none stored
 * counts as unknown, as for peers), else a node change that bumps the netmap version, so every
 * replica's netmap hub sends peers the new entry; no audit entry (telemetry).
 */
export async function setNodeNat(tx: Tx, id: string, nat: NatBehaviour): Promise<NodeChange | undefined> {
  return mutateNode(tx, id, null, null, async (before) => {
    if (sameNat(before.nat, nat)) return undefined
    const stored = {mapping: nat.mapping, filtering: nat.filtering}
    await tx.updateNode(id, {nat: stored})
    return {nat: stored}
  })
}

/** Presence bookkeeping: last-seen time only; not audited, no netmap change. */
export async function touchNode(tx: Tx, id: string, at: string): Promise<void> {
  await tx.updateNode(id, {lastSeen: at})
}

/**
 * touchNode for many nodes in one transaction (node id -> time): what presence writes when
 * sessions come and go in bursts (controller/group-commit.ts). A node removed meanwhile is
 * skipped, as touchNode skips it.
 */
export async function touchNodes(tx: Tx, seen: ReadonlyMap<string, string>): Promise<void> {
  for (const [id, at] of seen) await tx.updateNode(id, {lastSeen: at})
}

/**
 * Gives the node another owner (a deleted user's nodes, `mesh user delete --nodes reassign`).
 * A node change like any other: policies name owners, so every replica's netmap hub must see it.
 */
export async function reassignNode(
  tx: Tx,
  id: string,
  ownerId: string,
  ctx: AuditContext,
): Promise<NodeChange | undefined> {
  return mutateNode(tx, id, ctx, 'node.reassign', async (before) => {
    if ((before.ownerId ?? null) === ownerId) return undefined
    await tx.setNodeOwner(id, ownerId)
    return {name: before.name, ownerId, previousOwnerId: before.ownerId ?? null}
  })
}
// ---------------------------------------------------------------------------------------------
// Key expiry and rotation (issue 10, schema 0016)

const DAY_MS = 86_400_000

/**
 * When a key made at `at` expires: the tenant's default lifetime after `at`, or null (never)
 * when the tenant set 0 or the node is tagged. Tagged nodes are servers and CI machines that
 * joined with an auth key and no person behind them to log in again, so, as in Tailscale, their
 * keys do not expire unless an admin expires them.
 */
async function keyExpiryFor(
  tx: Tx,
  tenantId: string,
  tags: readonly string[],
  at: string,
): Promise<string | null> {
  if (tags.length > 0) return null
  const days = await tx.tenantKeyDays(tenantId)
  return days === 0 ? null : new Date(Date.parse(at) + days * DAY_MS).toISOString()
}

/** Whether the node's key expired by `at` (an RFC 3339 time or epoch ms). */
export function keyExpired(node: Pick<StoredNode, 'keyExpiresAt'>, at: string | number): boolean {
  const exp = node.keyExpiresAt
  if (exp === null || exp === undefined) return false
  return Date.parse(exp) <= (typeof at === 'number' ? at : Date.parse(at))
}

/**
 * Replaces the node's WireGuard public key (`mesh rotate-key`; the node asks with its
 * credential). The address, name and everything else stay; the key's lifetime starts again
 * (a node without expiry keeps none). Refused with NODE_KEY_EXPIRED once the key expired (an
 * admin extends it first) and with PUBLIC_KEY_TAKEN for the key it has or one another node of
 * the network has. Peers get the new key as a node change; the old key is gone from the store
 * when this commits, so the discovery port's index and the relay's checks stop knowing it.
 */
export async function rotateNodeKey(
  tx: Tx,
  id: string,
  publicKey: string,
  ctx: AuditContext,
): Promise<NodeChange> {
  return (await mutateNode(tx, id, ctx, 'node.rotate_key', async (before) => {
    if (before.status === 'disabled' || keyExpired(before, ctx.at)) throw new MeshError('NODE_KEY_EXPIRED')
    if (publicKey === before.publicKey || (await tx.publicKeyTaken(before.networkId, publicKey)))
      throw new MeshError('PUBLIC_KEY_TAKEN')
    const net = await tx.getNetwork(before.networkId)
    const keyExpiresAt =
      before.keyExpiresAt === null || before.keyExpiresAt === undefined || !net
        ? null
        : await keyExpiryFor(tx, net.tenantId, before.tags, ctx.at)
    await tx.updateNode(id, {publicKey, keyExpiresAt, keyWarnedAt: null})
    return {name: before.name, previousPublicKey: before.publicKey, publicKey, keyExpiresAt}
  })) as NodeChange
}

/**
 * An admin expires the node's key now (`mesh node expire`): it is disabled at once, peers drop
 * it and its sessions close with NODE_KEY_EXPIRED, until an admin extends it.
 */
export async function expireNodeKey(tx: Tx, id: string, ctx: AuditContext): Promise<NodeChange> {
  return (await mutateNode(tx, id, ctx, 'node.expire', async (before) => {
    // A pending node stays pending: extending it later must not skip its approval.
    await tx.updateNode(id, {
      keyExpiresAt: ctx.at,
      ...(before.status === 'active' && {status: 'disabled' as const}),
    })
    return {
      name: before.name,
      previousKeyExpiresAt: before.keyExpiresAt ?? null,
      previousStatus: before.status,
    }
  })) as NodeChange
}

/**
 * An admin gives the node's key a new expiry (`mesh node extend`; null: never). A node the
 * expiry disabled is active again: peers get it back and its meshd's next session is let in.
 */
export async function extendNodeKey(
  tx: Tx,
  id: string,
  keyExpiresAt: string | null,
  ctx: AuditContext,
): Promise<NodeChange> {
  return (await mutateNode(tx, id, ctx, 'node.extend', async (before) => {
    if (keyExpiresAt !== null && keyExpiresAt <= ctx.at)
      throw new MeshError('VALIDATION_FAILED', {message: 'the new expiry is not in the future'})
    await tx.updateNode(id, {
      keyExpiresAt,
      keyWarnedAt: null,
      ...(before.status === 'disabled' && {status: 'active' as const}),
    })
    return {name: before.name, keyExpiresAt, previousKeyExpiresAt: before.keyExpiresAt ?? null}
  })) as NodeChange
}

/**
 * The sweep (controller/key-expiry.ts) found the node's key expired: disabled, audited as
 * node.key_expired by the system. Undefined when it is no longer due (extended or rotated
 * meanwhile, or not active).
 */
export async function disableExpiredNode(
  tx: Tx,
  id: string,
  ctx: AuditContext,
): Promise<NodeChange | undefined> {
  return mutateNode(tx, id, ctx, 'node.key_expired', async (before) => {
    if (before.status !== 'active' || !keyExpired(before, ctx.at)) return undefined
    await tx.updateNode(id, {status: 'disabled'})
    return {name: before.name, keyExpiresAt: before.keyExpiresAt ?? null}
  })
}

/**
 * The sweep announces the coming expiry of the node's key once: stamps key_warned_at (a node
 * change, so every replica's admin stream hears of it; no audit entry, no peer sees a change).
 * Undefined when announced already or no longer due.
 */
export async function markKeyWarned(tx: Tx, id: string, at: string): Promise<NodeChange | undefined> {
  return mutateNode(tx, id, null, null, async (before) => {
    if (before.keyWarnedAt || before.keyExpiresAt === null || before.keyExpiresAt === undefined)
      return undefined
    await tx.updateNode(id, {keyWarnedAt: at})
    return {keyWarnedAt: at}
  })
}

/** The tenant's default node key lifetime in days (0: never); applies to keys made from now on. */
export async function setTenantKeyDays(
  tx: Tx,
  tenantId: string,
  days: number,
  ctx: AuditContext,
): Promise<number> {
  const t = await tx.lockTenant(tenantId)
  if (!t) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
  const before = await tx.tenantKeyDays(tenantId)
  if (before === days) return days
  await tx.setTenantKeyDays(tenantId, days)
  await chainAudit(tx, ctx, {
    tenantId,
    action: 'tenant.key_expiry',
    targetType: 'tenant',
    targetId: tenantId,
    networkId: null,
    detail: {days, previousDays: before},
  })
  return days
}
