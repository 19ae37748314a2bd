/**
 * What a caller may do: roles and permissions on the tenant and on each network, ranks (who may
 * grant which role, who may act on whom, who may revoke), and the lookups that resolve an object
 * of the caller's tenant by id or name. Objects of another tenant are NOT_FOUND, never
 * FORBIDDEN, so their existence does not leak.
 *
 * Replicas: stateless; every answer is read from the store, so any replica gives the same one.
 */
import type {Network, Permission, Role, UserInvite} from '../../shared/protocol/control-api.js'
import {ROLE_RANK, SUPERUSER_RANK, roleAllows} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import type {Store, StoredNode, UserRecord} from '../store/store.js'
import type {Principal} from './auth.js'

export type AccessReads = Pick<
  Store,
  | 'getMemberRole'
  | 'getNetwork'
  | 'getNetworkByName'
  | 'getNode'
  | 'getInvite'
  | 'getAuthKey'
  | 'getUser'
  | 'getUserInvite'
>

export class Access {
  constructor(private readonly store: AccessReads) {}

  // ---------------------------------------------------------------------------------------------
  // permissions

  /** The user's role on a network: its member role there, else its tenant role. */
  async networkRole(p: Principal, networkId: string): Promise<Role> {
    return (await this.store.getMemberRole(networkId, p.user.id)) ?? p.user.role
  }

  requireTenant(p: Principal, permission: Permission): void {
    if (!roleAllows(p.user.role, permission)) {
      throw new MeshError('FORBIDDEN', {message: `your role ${p.user.role} does not allow ${permission}`})
    }
  }

  async requireNetwork(p: Principal, networkId: string, permission: Permission): Promise<void> {
    const role = await this.networkRole(p, networkId)
    if (!roleAllows(role, permission)) {
      throw new MeshError('FORBIDDEN', {
        message: `your role ${role} on this network does not allow ${permission}`,
      })
    }
  }

  // ---------------------------------------------------------------------------------------------
  // ranks: owner > admin > moderator > member > guest, a superuser above all (ROLE_RANK)

  /**
   * The caller's rank, on a network or (no network) in the tenant: the rank of the role its access
   * comes from there (networkRole), so a tenant admin lowered to member on a network acts as a
   * member there, exactly as its permissions do.
   */
  async callerRank(p: Principal, networkId?: string): Promise<{rank: number; role: string}> {
    if (p.user.superuser) return {rank: SUPERUSER_RANK, role: 'superuser'}
    const role = networkId === undefined ? p.user.role : await this.networkRole(p, networkId)
    return {rank: ROLE_RANK[role], role}
  }

  /**
   * How far up a user stands when someone acts on it: the higher of its tenant role and its role
   * on the network. A network role lowers what a user may do there, never who may act on it: a
   * tenant owner an owner lowered on one network still outranks the tenant's admins there.
   */
  async standing(user: UserRecord, networkId?: string): Promise<{rank: number; role: string}> {
    if (user.superuser) return {rank: SUPERUSER_RANK, role: 'superuser'}
    const there = networkId === undefined ? undefined : await this.store.getMemberRole(networkId, user.id)
    const role = there !== undefined && ROLE_RANK[there] > ROLE_RANK[user.role] ? there : user.role
    return {rank: ROLE_RANK[role], role}
  }

  /** ROLE_TOO_HIGH unless the caller's rank (there) is at least that of `role`. */
  async requireMayGrant(p: Principal, role: Role, networkId?: string): Promise<void> {
    const me = await this.callerRank(p, networkId)
    if (ROLE_RANK[role] > me.rank) {
      throw new MeshError('ROLE_TOO_HIGH', {
        message: `your role ${me.role}${networkId ? ' on this network' : ''} cannot grant the role ${role}`,
      })
    }
  }

  /** OUTRANKED when `target` stands above the caller (there); an equal rank may act. */
  async requireNotOutranked(p: Principal, target: UserRecord, networkId?: string): Promise<void> {
    const me = await this.callerRank(p, networkId)
    const them = await this.standing(target, networkId)
    if (them.rank > me.rank) {
      throw new MeshError('OUTRANKED', {
        message: `${target.username} is ${them.role}, above your role ${me.role}${networkId ? ' on this network' : ''}`,
      })
    }
  }

  /**
   * Revoking an invite or auth key: its creator may; anyone else needs moderator rank on its
   * network for an invite (moderators manage invites) and admin rank for an auth key (a tenant
   * admin or owner without a lower role there, or a superuser).
   */
  async requireMayRevoke(
    p: Principal,
    what: 'invite' | 'auth key',
    obj: {networkId: string; createdBy: string},
  ): Promise<void> {
    if (obj.createdBy === p.user.id) return
    const me = await this.callerRank(p, obj.networkId)
    const needs = what === 'invite' ? 'moderator' : 'admin'
    if (me.rank < ROLE_RANK[needs]) {
      throw new MeshError('FORBIDDEN', {
        message: `your role ${me.role} on this network may revoke only the ${what}s you created`,
        hint: `ask a${needs === 'admin' ? 'n' : ''} ${needs} of the network to revoke this ${what}`,
      })
    }
  }

  // ---------------------------------------------------------------------------------------------
  // lookups in the caller's tenant

  /** A network of the user's tenant by id or name. */
  async findNetwork(p: Principal, ref: string): Promise<Network> {
    const byId = await this.store.getNetwork(ref)
    const net =
      byId && byId.tenantId === p.tenant.id ? byId : await this.store.getNetworkByName(p.tenant.id, ref)
    if (!net) throw new MeshError('NOT_FOUND', {message: `network ${ref} not found`})
    return net
  }

  async findNode(p: Principal, id: string): Promise<StoredNode> {
    const node = await this.store.getNode(id)
    const net = node && (await this.store.getNetwork(node.networkId))
    if (!node || !net || net.tenantId !== p.tenant.id)
      throw new MeshError('NOT_FOUND', {message: 'node not found'})
    return node
  }

  async findInvite(p: Principal, id: string): Promise<{networkId: string}> {
    const inv = await this.store.getInvite(id)
    if (!inv || inv.tenantId !== p.tenant.id) throw new MeshError('NOT_FOUND', {message: 'invite not found'})
    return inv
  }

  async findAuthKey(p: Principal, id: string): Promise<{networkId: string}> {
    const key = await this.store.getAuthKey(id)
    if (!key || key.tenantId !== p.tenant.id)
      throw new MeshError('NOT_FOUND', {message: 'auth key not found'})
    return key
  }

  async findUserInvite(p: Principal, id: string): Promise<UserInvite> {
    const inv = await this.store.getUserInvite(id)
    if (!inv || inv.tenantId !== p.tenant.id)
      throw new MeshError('NOT_FOUND', {message: 'user invite not found'})
    return inv
  }

  async findUser(p: Principal, id: string): Promise<UserRecord> {
    const user = await this.store.getUser(id)
    if (!user || user.tenantId !== p.tenant.id) throw new MeshError('NOT_FOUND', {message: 'user not found'})
    return user
  }
}
