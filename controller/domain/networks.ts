/**
 * Networks, their members, invites and auth keys: the rules, run inside store.write(tx => ...).
 * A network's name and CIDR are decided against the tenant's other networks under the tenant's
 * row lock, so two controllers creating networks at once cannot both take a name or overlap.
 */
import type {AuthKey, Invite, Network, NetworkMember, Role} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import {cidrsOverlap, parseCidr} from '../../shared/net/ipv4.js'
import type {
  AuditContext,
  AuthKeyRecord,
  InviteRecord,
  NetworkPatch,
  NetworkRecord,
  NewNetwork,
  NodeChange,
  Tx,
  NewInvite,
  NewAuthKey,
} from '../store/store.js'
import {publicAuthKey, publicInvite, publicNetwork} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'

const nameTaken = (name: string) =>
  new MeshError('NETWORK_NAME_TAKEN', {message: `a network named ${name} already exists`})

async function networkOr404(tx: Tx, id: string): Promise<NetworkRecord> {
  const net = await tx.getNetwork(id)
  if (!net) throw new MeshError('NOT_FOUND', {message: 'network not found'})
  return net
}

export async function createNetwork(tx: Tx, net: NewNetwork, ctx: AuditContext): Promise<Network> {
  const cidr = parseCidr(net.cidr)
  if (!cidr) throw new MeshError('INVALID_CIDR', {message: `cidr: ${net.cidr} is not a network prefix`})
  if (!(await tx.lockTenant(net.tenantId))) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
  if (await tx.networkNameTaken(net.tenantId, net.name)) throw nameTaken(net.name)
  for (const other of await tx.networkCidrs(net.tenantId)) {
    const oc = parseCidr(other.cidr)
    if (oc && cidrsOverlap(cidr, oc)) {
      throw new MeshError('CIDR_OVERLAP', {
        message: `cidr: ${net.cidr} overlaps ${other.cidr} of network ${other.name}`,
      })
    }
  }
  await tx.insertNetwork(net, ctx.at)
  await chainAudit(tx, ctx, {
    tenantId: net.tenantId,
    action: 'network.create',
    targetType: 'network',
    targetId: net.id,
    networkId: net.id,
    detail: {name: net.name, cidr: net.cidr, joinPolicy: net.joinPolicy, maxNodes: net.maxNodes},
  })
  return publicNetwork(await networkOr404(tx, net.id))
}

export async function updateNetwork(
  tx: Tx,
  id: string,
  patch: NetworkPatch,
  ctx: AuditContext,
): Promise<Network> {
  const before = await networkOr404(tx, id)
  if (patch.name !== undefined && patch.name !== before.name) {
    await tx.lockTenant(before.tenantId)
    if (await tx.networkNameTaken(before.tenantId, patch.name)) throw nameTaken(patch.name)
  }
  await tx.updateNetwork(id, {
    name: patch.name ?? before.name,
    description: patch.description ?? before.description,
    joinPolicy: patch.joinPolicy ?? before.joinPolicy,
    maxNodes: patch.maxNodes === undefined ? before.maxNodes : patch.maxNodes,
  })
  await chainAudit(tx, ctx, {
    tenantId: before.tenantId,
    action: 'network.update',
    targetType: 'network',
    targetId: id,
    networkId: id,
    detail: {...patch},
  })
  return publicNetwork(await networkOr404(tx, id))
}

/** Deletes the network with its nodes, invites and keys; returns the removed nodes' changes. */
export async function deleteNetwork(tx: Tx, id: string, ctx: AuditContext): Promise<NodeChange[]> {
  const before = await tx.lockNetwork(id)
  if (!before) throw new MeshError('NOT_FOUND', {message: 'network not found'})
  const nodes = await tx.networkNodes(id)
  const version = before.netmapVersion + 1
  await tx.deleteNetwork(id)
  await chainAudit(tx, ctx, {
    tenantId: before.tenantId,
    action: 'network.delete',
    targetType: 'network',
    targetId: id,
    networkId: id,
    detail: {name: before.name, cidr: before.cidr, nodes: nodes.length},
  })
  return nodes.map((n): NodeChange => ({
    networkId: id,
    tenantId: before.tenantId,
    version,
    nodeId: n.id,
    kind: 'removed',
    node: null,
    before: n,
    networkDeleted: true,
  }))
}

export async function setMember(
  tx: Tx,
  networkId: string,
  userId: string,
  role: Role,
  ctx: AuditContext,
): Promise<NetworkMember> {
  const net = await networkOr404(tx, networkId)
  const user = await tx.getUser(userId)
  if (!user || user.tenantId !== net.tenantId) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  await tx.upsertMember(networkId, userId, role)
  await chainAudit(tx, ctx, {
    tenantId: net.tenantId,
    action: 'member.set',
    targetType: 'user',
    targetId: userId,
    networkId,
    detail: {role},
  })
  return {userId, username: user.username, role}
}

export async function removeMember(
  tx: Tx,
  networkId: string,
  userId: string,
  ctx: AuditContext,
): Promise<void> {
  const net = await networkOr404(tx, networkId)
  if (!(await tx.deleteMember(networkId, userId)))
    throw new MeshError('NOT_FOUND', {message: 'the user has no role on this network'})
  await chainAudit(tx, ctx, {
    tenantId: net.tenantId,
    action: 'member.remove',
    targetType: 'user',
    targetId: userId,
    networkId,
  })
}

export async function createInvite(tx: Tx, inv: NewInvite, ctx: AuditContext): Promise<Invite> {
  const net = await networkOr404(tx, inv.networkId)
  await tx.insertInvite({...inv, at: ctx.at})
  await chainAudit(tx, ctx, {
    tenantId: net.tenantId,
    action: 'invite.create',
    targetType: 'invite',
    targetId: inv.id,
    networkId: inv.networkId,
    detail: {role: inv.role, maxUses: inv.maxUses, expiresAt: inv.expiresAt},
  })
  return publicInvite((await tx.getInvite(inv.id)) as InviteRecord)
}

/** Revoking twice is a no-op that keeps the first time. */
export async function revokeInvite(tx: Tx, id: string, ctx: AuditContext): Promise<Invite> {
  const inv = await tx.getInvite(id)
  if (!inv) throw new MeshError('NOT_FOUND', {message: 'invite not found'})
  await tx.revokeInvite(id, ctx.at)
  await chainAudit(tx, ctx, {
    tenantId: inv.tenantId,
    action: 'invite.revoke',
    targetType: 'invite',
    targetId: id,
    networkId: inv.networkId,
  })
  return publicInvite((await tx.getInvite(id)) as InviteRecord)
}

export async function createAuthKey(tx: Tx, key: NewAuthKey, ctx: AuditContext): Promise<AuthKey> {
  const net = await networkOr404(tx, key.networkId)
  await tx.insertAuthKey({...key, at: ctx.at})
  await chainAudit(tx, ctx, {
    tenantId: net.tenantId,
    action: 'authkey.create',
    targetType: 'authkey',
    targetId: key.id,
    networkId: key.networkId,
    detail: {
      reusable: key.reusable,
      ephemeral: key.ephemeral,
      preApproved: key.preApproved,
      tags: key.tags,
      expiresAt: key.expiresAt,
    },
  })
  return publicAuthKey((await tx.getAuthKey(key.id)) as AuthKeyRecord)
}

export async function revokeAuthKey(tx: Tx, id: string, ctx: AuditContext): Promise<AuthKey> {
  const key = await tx.getAuthKey(id)
  if (!key) throw new MeshError('NOT_FOUND', {message: 'auth key not found'})
  await tx.revokeAuthKey(id, ctx.at)
  await chainAudit(tx, ctx, {
    tenantId: key.tenantId,
    action: 'authkey.revoke',
    targetType: 'authkey',
    targetId: id,
    networkId: key.networkId,
  })
  return publicAuthKey((await tx.getAuthKey(id)) as AuthKeyRecord)
}
