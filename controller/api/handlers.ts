/**
 * One thin handler per ROUTES entry, keyed by route id: the server has already authenticated
 * the caller, parsed params/query/body with the route's schemas and resolved and authorized the
 * object the route names (the `scope`); a handler only calls the coordinator and shapes the reply.
 */
import type {z} from 'zod'
import type {ROUTES, RouteId, RouteReply} from '../../shared/protocol/control-api.js'
import type {Network, UserInvite} from '../../shared/protocol/control-api.js'
import {encodeJoinString, encodeUserInviteString} from '../../shared/invite.js'
import type {Principal} from '../auth/auth.js'
import type {RequestMeta} from '../context.js'
import type {ControllerState} from '../state.js'
import {publicUser, type StoredNode, type UserRecord} from '../store/store.js'
import {withPresence} from '../presence.js'

type Out<T> = T extends z.ZodType ? z.output<T> : undefined
type Def<R extends RouteId> = (typeof ROUTES)[R]

/** What the server resolved before the handler runs. */
export interface Scope {
  network?: Network
  /** The node named in the path, or for auth 'node' routes the calling node. */
  node?: StoredNode
  invite?: {networkId: string}
  authKey?: {networkId: string}
  user?: UserRecord
  userInvite?: UserInvite
}

export interface HandlerContext<R extends RouteId> {
  readonly principal: Principal | undefined
  readonly params: Def<R> extends {params: infer P} ? Out<P> : Record<string, never>
  readonly query: Def<R> extends {query: infer Q} ? Out<Q> : Record<string, never>
  readonly body: Def<R> extends {body: infer B} ? Out<B> : undefined
  readonly meta: RequestMeta
  readonly scope: Scope
  /** The controller's public URL (flag, or derived from the request's Host). */
  readonly publicUrl: string
}

export type Handler<R extends RouteId> = (ctx: HandlerContext<R>) => Promise<RouteReply<R>>
export type HandlerMap = {[R in RouteId]: Handler<R>}

const must = <T>(v: T | undefined): T => {
  if (v === undefined) throw new Error('handler ran without its resolved scope')
  return v
}

export function makeHandlers(state: ControllerState): HandlerMap {
  const p = (ctx: {principal: Principal | undefined}) => must(ctx.principal)
  return {
    login: async ({body, meta}) => state.auth.login(body.username, body.password, meta, body.otp),
    logout: async (ctx) => {
      await state.auth.logout(p(ctx), ctx.meta)
      return {ok: true}
    },
    whoami: async (ctx) => {
      const {user, tenant} = p(ctx)
      const ids = await state.auth.oidc.identitiesOf(user.id)
      return {user: publicUser(user), tenant, ...(ids.length > 0 ? {identities: ids} : {})}
    },

    'tenant.create': async (ctx) => state.createTenant(p(ctx), ctx.body, ctx.meta),
    'user.list': async (ctx) => state.listUsers(p(ctx), ctx.query),
    'user.create': async (ctx) => state.createUser(p(ctx), ctx.body, ctx.meta),
    'user.update': async (ctx) => state.updateUser(p(ctx), ctx.params.id, ctx.body, ctx.meta),
    'user.delete': async (ctx) => ({
      ok: true,
      ...(await state.deleteUser(p(ctx), ctx.params.id, ctx.query, ctx.meta)),
    }),

    'network.list': async (ctx) => state.listNetworks(p(ctx), ctx.query),
    'network.create': async (ctx) => state.createNetwork(p(ctx), ctx.body, ctx.meta),
    'network.show': async (ctx) => must(ctx.scope.network),
    'network.update': async (ctx) => state.updateNetwork(p(ctx), must(ctx.scope.network), ctx.body, ctx.meta),
    'network.delete': async (ctx) => {
      await state.deleteNetwork(p(ctx), must(ctx.scope.network), ctx.meta)
      return {ok: true}
    },
    'member.list': async (ctx) => ({items: await state.listMembers(must(ctx.scope.network))}),
    'member.set': async (ctx) =>
      state.setMember(p(ctx), must(ctx.scope.network), ctx.params.id, ctx.body.role, ctx.meta),
    'member.remove': async (ctx) => {
      await state.removeMember(p(ctx), must(ctx.scope.network), ctx.params.id, ctx.meta)
      return {ok: true}
    },

    'invite.list': async (ctx) => state.listInvites(must(ctx.scope.network), ctx.query),
    'invite.create': async (ctx) => {
      const {invite, code} = await state.createInvite(p(ctx), must(ctx.scope.network), ctx.body, ctx.meta)
      return {invite, code, joinString: encodeJoinString(ctx.publicUrl, code)}
    },
    'invite.revoke': async (ctx) => state.revokeInvite(p(ctx), ctx.params.id, ctx.meta),

    'authkey.list': async (ctx) => state.listAuthKeys(must(ctx.scope.network), ctx.query),
    'authkey.create': async (ctx) => state.createAuthKey(p(ctx), must(ctx.scope.network), ctx.body, ctx.meta),
    'authkey.revoke': async (ctx) => state.revokeAuthKey(p(ctx), ctx.params.id, ctx.meta),
    'relaykey.list': async (ctx) => state.listRelayKeys(p(ctx), ctx.query),
    'relaykey.create': async (ctx) => state.createRelayKey(p(ctx), ctx.body, ctx.meta),
    'relaykey.revoke': async (ctx) => state.revokeRelayKey(p(ctx), ctx.params.id, ctx.meta),

    'node.list': async (ctx) =>
      state.listNodes(
        must(ctx.scope.network),
        {status: ctx.query.status},
        {
          limit: ctx.query.limit,
          cursor: ctx.query.cursor,
        },
      ),
    'connection.list': async (ctx) =>
      state.connections.list(
        must(ctx.scope.network).id,
        {nodeId: ctx.query.node},
        {limit: ctx.query.limit, cursor: ctx.query.cursor},
      ),
    'connection.log': async (ctx) =>
      state.connections.logOf(
        must(ctx.scope.network).id,
        {nodeId: ctx.query.node},
        {limit: ctx.query.limit, cursor: ctx.query.cursor},
      ),
    'node.show': async (ctx) => withPresence(state.presence, must(ctx.scope.node)),
    'node.approve': async (ctx) => state.approveNode(p(ctx), ctx.params.id, ctx.meta),
    'node.update': async (ctx) => state.renameNode(p(ctx), ctx.params.id, ctx.body.name, ctx.meta),
    'node.remove': async (ctx) => {
      await state.removeNode(p(ctx), ctx.params.id, ctx.meta)
      return {ok: true}
    },

    'node.leave': async (ctx) => {
      await state.leaveNode(must(ctx.scope.node), ctx.meta)
      return {ok: true}
    },

    register: async (ctx) => state.register(ctx.body, ctx.principal, ctx.meta),

    audit: async (ctx) =>
      state.listAudit(
        p(ctx),
        {
          since: ctx.query.since,
          actor: ctx.query.actor,
          network: ctx.query.network,
          afterSeq: ctx.query.afterSeq,
        },
        {limit: ctx.query.limit, cursor: ctx.query.cursor},
      ),

    'audit.verify': async (ctx) => state.verifyAudit(p(ctx)),

    'policy.get': async (ctx) => state.getPolicy(p(ctx)),
    'policy.set': async (ctx) => state.setPolicy(p(ctx), ctx.body, ctx.meta),
    'policy.delete': async (ctx) => {
      await state.deletePolicy(p(ctx), ctx.meta)
      return {ok: true}
    },
    'policy.check': async (ctx) => state.checkPolicy(p(ctx), ctx.body.document),
    'token.refresh': async (ctx) => state.auth.sessions.refresh(ctx.body.refreshToken, ctx.meta),
    'session.list': async (ctx) => state.auth.sessions.list(p(ctx), ctx.query.user),
    'session.revoke': async (ctx) => {
      await state.auth.sessions.revoke(p(ctx), ctx.params.id, ctx.meta)
      return {ok: true}
    },
    'mfa.enable': async (ctx) => state.auth.sessions.beginMfa(p(ctx), ctx.meta),
    'mfa.confirm': async (ctx) => state.auth.sessions.confirmMfa(p(ctx), ctx.body.code, ctx.meta),
    'mfa.disable': async (ctx) => {
      await state.auth.sessions.disableMfa(p(ctx), ctx.body.code, ctx.meta)
      return {ok: true}
    },
    'userinvite.list': async (ctx) => state.listUserInvites(p(ctx), ctx.query),
    'userinvite.create': async (ctx) => {
      const {invite, code} = await state.createUserInvite(p(ctx), ctx.body, ctx.meta)
      return {invite, code, inviteString: encodeUserInviteString(ctx.publicUrl, code)}
    },
    'userinvite.revoke': async (ctx) => state.revokeUserInvite(p(ctx), must(ctx.scope.userInvite), ctx.meta),
    signup: async (ctx) => state.signup(ctx.body, ctx.meta),
    'oidc.issuers': async () => ({items: state.auth.oidc.issuers()}),
    'oidc.start': async (ctx) =>
      state.auth.oidc.startCode(ctx.body.issuer, ctx.body.redirectUri, ctx.body.invite, ctx.meta),
    'oidc.finish': async (ctx) => state.auth.oidc.finishCode(ctx.body.flowId, ctx.body.callbackUrl, ctx.meta),
    'oidc.device': async (ctx) => state.auth.oidc.startDevice(ctx.body.issuer, ctx.body.invite, ctx.meta),
    'oidc.device.poll': async (ctx) => state.auth.oidc.pollDevice(ctx.body.flowId, ctx.meta),
    'node.expire': async (ctx) => state.expireNode(p(ctx), ctx.params.id, ctx.meta),
    'node.extend': async (ctx) => state.extendNode(p(ctx), ctx.params.id, ctx.body, ctx.meta),
    'node.rotateKey': async (ctx) => state.rotateNodeKey(must(ctx.scope.node), ctx.body.publicKey, ctx.meta),
    'tenant.keyExpiry': async (ctx) => state.getKeyExpiry(p(ctx)),
    'tenant.setKeyExpiry': async (ctx) => state.setKeyExpiry(p(ctx), ctx.body.days, ctx.meta),
  }
}

/**
 * How each route finds (and authorizes against) the object it names: the network in the path,
 * an object whose network is checked, a user of the tenant, or the tenant itself. Objects of
 * another tenant resolve to NOT_FOUND before any permission is checked.
 */
export type ScopeKind = 'tenant' | 'network' | 'node' | 'invite' | 'authkey' | 'user' | 'userinvite' | 'none'

export const ROUTE_SCOPES: Record<RouteId, ScopeKind> = {
  login: 'none',
  logout: 'none',
  whoami: 'none',
  'tenant.create': 'none',
  'user.list': 'tenant',
  'user.create': 'tenant',
  'user.update': 'user',
  'user.delete': 'user',
  'network.list': 'tenant',
  'network.create': 'tenant',
  'network.show': 'network',
  'network.update': 'network',
  'network.delete': 'network',
  'member.list': 'network',
  'member.set': 'network',
  'member.remove': 'network',
  'invite.list': 'network',
  'invite.create': 'network',
  'invite.revoke': 'invite',
  'authkey.list': 'network',
  'authkey.create': 'network',
  'authkey.revoke': 'authkey',
  'relaykey.list': 'none',
  'relaykey.create': 'none',
  'relaykey.revoke': 'none',
  'node.list': 'network',
  'connection.list': 'network',
  'connection.log': 'network',
  'node.show': 'node',
  'node.approve': 'node',
  'node.update': 'node',
  'node.remove': 'node',
  // The caller is the node (auth 'node'): the server puts it into scope.node itself.
  'node.leave': 'none',
  register: 'none',
  audit: 'tenant',
  'audit.verify': 'tenant',
  'policy.get': 'tenant',
  'policy.set': 'tenant',
  'policy.delete': 'tenant',
  'policy.check': 'tenant',
  // Sessions and MFA resolve their own objects (the caller's, or a user of its tenant).
  'token.refresh': 'none',
  'session.list': 'none',
  'session.revoke': 'none',
  'mfa.enable': 'none',
  'mfa.confirm': 'none',
  'mfa.disable': 'none',
  'userinvite.list': 'tenant',
  'userinvite.create': 'tenant',
  'userinvite.revoke': 'userinvite',
  signup: 'none',
  // OIDC logins have no caller yet: the flow handle is the credential.
  'oidc.issuers': 'none',
  'oidc.start': 'none',
  'oidc.finish': 'none',
  'oidc.device': 'none',
  'oidc.device.poll': 'none',
  'node.expire': 'node',
  'node.extend': 'node',
  // The caller is the node (auth 'node'), as for node.leave.
  'node.rotateKey': 'none',
  'tenant.keyExpiry': 'tenant',
  'tenant.setKeyExpiry': 'tenant',
}
