/**
 * Every write the coordinator makes, each as one store.write() transaction around its domain
 * rule. The coordinator (state.ts) and the store contract suite call these; the rules themselves
 * live in users.ts, user-invites.ts, sessions.ts, identities.ts, networks.ts, nodes.ts, connection-log.ts,
 * relays.ts and
 * policies.ts.
 */
import type {Store} from '../store/store.js'
import * as connections from './connection-log.js'
import * as identities from './identities.js'
import * as networks from './networks.js'
import * as nodes from './nodes.js'
import * as policies from './policies.js'
import * as relays from './relays.js'
import * as sessions from './sessions.js'
import * as userInvites from './user-invites.js'
import * as users from './users.js'

type Rule = (tx: never, ...args: never[]) => Promise<unknown>
type Rest<F> = F extends (tx: never, ...args: infer A) => Promise<unknown> ? A : never
/** A rule with its transaction argument taken away: what callers of Writes see. */
type Bound<F extends Rule> = (...args: Rest<F>) => ReturnType<F>

const RULES = {
  createTenantWithOwner: users.createTenantWithOwner,
  createUser: users.createUser,
  updateUserRole: users.updateUserRole,
  deleteUser: users.deleteUser,
  createToken: users.createToken,
  deleteToken: users.deleteToken,
  appendAudit: users.appendAudit,
  createNetwork: networks.createNetwork,
  updateNetwork: networks.updateNetwork,
  deleteNetwork: networks.deleteNetwork,
  setMember: networks.setMember,
  removeMember: networks.removeMember,
  createInvite: networks.createInvite,
  revokeInvite: networks.revokeInvite,
  createAuthKey: networks.createAuthKey,
  revokeAuthKey: networks.revokeAuthKey,
  registerNode: nodes.registerNode,
  approveNode: nodes.approveNode,
  renameNode: nodes.renameNode,
  removeNode: nodes.removeNode,
  setNodeEndpoints: nodes.setNodeEndpoints,
  setNodeObservedEndpoint: nodes.setNodeObservedEndpoint,
  setNodeNat: nodes.setNodeNat,
  touchNode: nodes.touchNode,
  touchNodes: nodes.touchNodes,
  rotateNodeKey: nodes.rotateNodeKey,
  expireNodeKey: nodes.expireNodeKey,
  extendNodeKey: nodes.extendNodeKey,
  disableExpiredNode: nodes.disableExpiredNode,
  markKeyWarned: nodes.markKeyWarned,
  setTenantKeyDays: nodes.setTenantKeyDays,
  writeConnections: connections.writeConnections,
  writeConnectionSides: connections.writeConnectionSides,
  createRelayKey: relays.createRelayKey,
  revokeRelayKey: relays.revokeRelayKey,
  importRelayKeys: relays.importRelayKeys,
  relayHeartbeat: relays.relayHeartbeat,
  sweepRelays: relays.sweepRelays,
  leaveRelays: relays.leaveRelays,
  relayMeshSecret: relays.relayMeshSecret,
  setPolicy: policies.setPolicy,
  deletePolicy: policies.deletePolicy,
  startSession: sessions.startSession,
  refreshSession: sessions.refreshSession,
  revokeSession: sessions.revokeSession,
  useSecondFactor: sessions.useSecondFactor,
  beginMfa: sessions.beginMfa,
  confirmMfa: sessions.confirmMfa,
  disableMfa: sessions.disableMfa,
  sealMfaSecrets: sessions.sealMfaSecrets,
  createUserInvite: userInvites.createUserInvite,
  revokeUserInvite: userInvites.revokeUserInvite,
  acceptUserInvite: userInvites.acceptUserInvite,
  reassignNode: nodes.reassignNode,
  renameUser: users.renameUser,
  oidcLogin: identities.oidcLogin,
  startOidcFlow: identities.startOidcFlow,
  checkOidcFlowRoom: identities.checkOidcFlowRoom,
  takeOidcFlow: identities.takeOidcFlow,
  pollOidcFlow: identities.pollOidcFlow,
  slowOidcFlow: identities.slowOidcFlow,
  endOidcFlow: identities.endOidcFlow,
} as const

export type Writes = {readonly [K in keyof typeof RULES]: Bound<(typeof RULES)[K]>}

/** The writes on `store`, each rule in its own transaction. */
export function storeWrites(store: Store): Writes {
  const bound = Object.fromEntries(
    Object.entries(RULES).map(([name, rule]) => [
      name,
      (...args: unknown[]) =>
        store.write((tx) => (rule as (...a: unknown[]) => Promise<unknown>)(tx, ...args)),
    ]),
  )
  return bound as Writes
}
