/**
 * Turns admin-command flags into controller requests, so the command files stay thin and the
 * judgement calls (what "unlimited" means, what an empty `set` is) are testable on their own.
 */
import {MeshError, isMeshError} from '../../shared/errors.js'
import type {
  Connection,
  CreateAuthKeyRequest,
  CreateInviteRequest,
  JoinPolicy,
  Node,
  NodeDetail,
  UpdateNetworkRequest,
  User,
} from '../../shared/protocol/control-api.js'
import type {ControllerClient} from './controller-client.js'
import {parseDuration} from './duration.js'

/** `--max-nodes`: a positive count, or `unlimited` / `none` to clear the cap. */
export function parseMaxNodes(text: string): number | null {
  const t = text.trim().toLowerCase()
  if (t === 'unlimited' || t === 'none') return null
  if (!/^\d{1,7}$/.test(t) || Number(t) < 1) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: `--max-nodes "${text}" is not a positive whole number`,
      hint: 'give a count such as 50, or `unlimited`',
    })
  }
  return Number(t)
}

/** A PATCH body holding only what was given; an empty one is a usage error, not a no-op. */
export function networkUpdate(flags: {
  name?: string
  description?: string
  policy?: string
  'max-nodes'?: string
}): UpdateNetworkRequest {
  const body: UpdateNetworkRequest = {}
  if (flags.name !== undefined) body.name = flags.name
  if (flags.description !== undefined) body.description = flags.description
  if (flags.policy !== undefined) body.joinPolicy = flags.policy as JoinPolicy
  if (flags['max-nodes'] !== undefined) body.maxNodes = parseMaxNodes(flags['max-nodes'])
  if (Object.keys(body).length === 0) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: 'nothing to change',
      hint: 'pass at least one of --name, --description, --policy, --max-nodes',
    })
  }
  return body
}

export function inviteRequest(flags: {
  expires: string
  'max-uses'?: number
  unlimited: boolean
  role: string
}): CreateInviteRequest {
  return {
    expiresIn: parseDuration(flags.expires, '--expires'),
    maxUses: flags.unlimited ? null : (flags['max-uses'] ?? 1),
    role: flags.role as CreateInviteRequest['role'],
  }
}

export function authKeyRequest(flags: {
  reusable: boolean
  ephemeral: boolean
  'pre-approved': boolean
  tag?: string[]
  expires: string
}): CreateAuthKeyRequest {
  return {
    reusable: flags.reusable,
    ephemeral: flags.ephemeral,
    preApproved: flags['pre-approved'],
    tags: [...new Set(flags.tag ?? [])],
    expiresIn: parseDuration(flags.expires, '--expires'),
  }
}

/**
 * The id of a node named by id, or (with --network) by name. Without a network the reference
 * is taken as an id: names are only unique within a network.
 */
export async function resolveNodeId(api: ControllerClient, ref: string, network?: string): Promise<string> {
  if (network === undefined) return ref
  const {items} = await api.listAll('node.list', {params: {network}})
  const match: Node | undefined = items.find((n) => n.id === ref) ?? items.find((n) => n.name === ref)
  if (!match) {
    throw new MeshError('NOT_FOUND', {
      message: `no node "${ref}" in network ${network}`,
      hint: `list them with \`mesh node list --network ${network}\``,
    })
  }
  return match.id
}

/**
 * The id of a user named by id or user name, for `mesh network member`. Members of the network
 * are looked up first (that needs only network.view, so a network admin can remove one by name);
 * anyone else comes from the tenant's user list. Without tenant.manage that list is FORBIDDEN,
 * and the reference is then passed on as an id for the controller to judge.
 */
export async function resolveUserId(api: ControllerClient, network: string, ref: string): Promise<string> {
  const {items: members} = await api.listMembers({network})
  const member = members.find((m) => m.userId === ref) ?? members.find((m) => m.username === ref)
  if (member) return member.userId
  let users: User[]
  try {
    users = (await api.listAll('user.list', {})).items
  } catch (err) {
    if (isMeshError(err) && err.code === 'FORBIDDEN') return ref
    throw err
  }
  const user = users.find((u) => u.id === ref) ?? users.find((u) => u.username === ref)
  if (!user) {
    throw new MeshError('NOT_FOUND', {
      message: `no user "${ref}" in your tenant`,
      hint: 'list them with `mesh user list`',
    })
  }
  return user.id
}

/**
 * `mesh node show`: the node with its current connections, each seen from the node (the peer,
 * and the endpoint this node's WireGuard uses for it), lowest latency first, unmeasured last.
 */
export function nodeDetail(node: Node, connections: readonly Connection[]): NodeDetail {
  const mine = connections
    .filter((c) => c.a.id === node.id || c.b.id === node.id)
    .map((c) => {
      const self = c.a.id === node.id
      return {
        peer: self ? c.b : c.a,
        path: c.path,
        latencyMs: c.latencyMs,
        endpoint: self ? c.endpoints.a : c.endpoints.b,
        since: c.since,
      }
    })
    .sort(
      (x, y) => (x.latencyMs ?? Infinity) - (y.latencyMs ?? Infinity) || x.peer.id.localeCompare(y.peer.id),
    )
  return {...node, connections: mine}
}

/** The id of a user of the caller's tenant named by id or user name (needs tenant.manage). */
export async function resolveTenantUserId(api: ControllerClient, ref: string): Promise<string> {
  const {items} = await api.listAll('user.list', {})
  const user = items.find((u) => u.id === ref) ?? items.find((u) => u.username === ref)
  if (!user) {
    throw new MeshError('NOT_FOUND', {
      message: `no user "${ref}" in your tenant`,
      hint: 'list them with `mesh user list`',
    })
  }
  return user.id
}
