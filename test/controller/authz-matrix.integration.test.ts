/**
 * The authorization matrix: every ROUTES entry × caller (each of ROLES in tenant A,
 * or no token) × whose object (tenant A's own or tenant B's), each cell its own test, with the
 * expected status derived from the route's auth and ROLE_PERMISSIONS rather than written down.
 * Networks are named by id and by name. Beside it, FLAG_CASES check what a request's flags ask
 * for beyond the route (a pre-approved key, the role an invite grants, revoking another user's
 * invite or key), every role in turn. A few tests beside the matrix cover what it cannot:
 * network roles overriding tenant roles, cross-tenant member grants, audit and event-stream leaks,
 * and what a node credential sees (its own network's active peers only) and loses on removal.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import WebSocket from 'ws'
import {startTestController} from '../../controller/testing/test-controller.js'
import {totpCode} from '../../controller/auth/totp.js'
import {TEST_CLIENT_ID, browse, startTestIdp, type TestIdp} from '../support/oidc-provider.js'
import {CLOSE} from '../../shared/protocol/netmap.js'
import {
  ROLES,
  ROLE_RANK,
  ROUTES,
  WS_PATHS,
  roleAllows,
  type Role,
  type RouteDef,
  type RouteId,
} from '../../shared/protocol/control-api.js'
import {
  Api,
  errorCode,
  newAgent,
  openStream,
  registerBody,
  uniqueCidr24,
  uniqueName,
  wireErrorProblem,
  type CallOptions,
  type HttpReply,
} from './helpers.js'

type Caller = Role | 'anonymous' | 'superuser'
/** Whose object the path names, and for :network whether by id or by name. */
type Side = 'own' | 'other' | 'own-by-name' | 'other-by-name'

const PASSWORD = 'correct horse battery staple'

interface TenantWorld {
  id: string
  ownerToken: string
  net: {id: string; name: string}
  /** An `approval` network with a non-pre-approved reusable key: its nodes start pending. */
  approvalNet: {id: string}
  authKey: string
  approvalKey: string
  node: {id: string}
  /** A user that the role-changing routes act on (never a caller). */
  target: {id: string}
  networkIds: string[]
  userIds: string[]
}

interface World {
  api: Api
  superToken: string
  A: TenantWorld
  B: TenantWorld
  callers: Record<Role, {id: string; username: string; token: string}>
}

let ctl: Awaited<ReturnType<typeof startTestController>> | undefined
/** The OpenID provider the OIDC routes talk to (auth 'none': every caller gets a login). */
let idp: TestIdp | undefined
const OIDC_REDIRECT = 'http://127.0.0.1:53682/callback'
let world: World
const agent = newAgent(4)

// ---------------------------------------------------------------------------------------------
// Fixture builders: every object is made through the API by the owner of its tenant.

async function makeTenant(
  api: Api,
  superToken: string,
): Promise<TenantWorld & {ownerName: string; ownerId: string}> {
  const ownerName = uniqueName('owner')
  const created = await api.ok<{tenant: {id: string}; owner: {id: string}}>('tenant.create', {
    token: superToken,
    body: {name: uniqueName('t'), owner: {username: ownerName, password: PASSWORD}},
  })
  const {token: ownerToken} = await api.ok<{token: string}>('login', {
    body: {username: ownerName, password: PASSWORD},
  })
  const net = await api.ok<{id: string; name: string}>('network.create', {
    token: ownerToken,
    body: {name: uniqueName('net'), cidr: uniqueCidr24()},
  })
  const approvalNet = await api.ok<{id: string}>('network.create', {
    token: ownerToken,
    body: {name: uniqueName('ap'), cidr: uniqueCidr24(), joinPolicy: 'approval'},
  })
  const {key: authKey} = await api.ok<{key: string}>('authkey.create', {
    token: ownerToken,
    params: {network: net.id},
    body: {reusable: true, preApproved: true},
  })
  const {key: approvalKey} = await api.ok<{key: string}>('authkey.create', {
    token: ownerToken,
    params: {network: approvalNet.id},
    body: {reusable: true, preApproved: false},
  })
  const {node} = await api.ok<{node: {id: string}}>('register', {body: registerBody({authKey})})
  const target = await api.ok<{id: string}>('user.create', {
    token: ownerToken,
    body: {username: uniqueName('target'), password: PASSWORD, role: 'member'},
  })
  return {
    id: created.tenant.id,
    ownerName,
    ownerId: created.owner.id,
    ownerToken,
    net,
    approvalNet,
    authKey,
    approvalKey,
    node,
    target,
    networkIds: [net.id, approvalNet.id],
    userIds: [created.owner.id, target.id],
  }
}

const login = async (username: string) =>
  (await world.api.ok<{token: string}>('login', {body: {username, password: PASSWORD}})).token

/** A login's full reply (access and refresh token, session id). */
const loginPair = async (username: string) =>
  world.api.ok<{token: string; refreshToken: string; sessionId: string}>('login', {
    body: {username, password: PASSWORD},
  })
/** The caller's user name when it is a user of tenant `t`, else `t`'s owner's. */
const callerName = (t: TenantWorld, caller: Caller): string =>
  t === world.A && caller in world.callers
    ? world.callers[caller as Role].username
    : (t as TenantWorld & {ownerName: string}).ownerName
/** A new member of tenant A, logged in: its access token. */
async function freshPerson(): Promise<string> {
  const username = uniqueName('p')
  await world.api.ok('user.create', {
    token: world.A.ownerToken,
    body: {username, password: PASSWORD, role: 'member'},
  })
  return login(username)
}

const freshUser = async (t: TenantWorld) =>
  world.api.ok<{id: string}>('user.create', {
    token: t.ownerToken,
    body: {username: uniqueName('u'), password: PASSWORD, role: 'member'},
  })
const freshNetwork = async (t: TenantWorld) =>
  world.api.ok<{id: string}>('network.create', {
    token: t.ownerToken,
    body: {name: uniqueName('net'), cidr: uniqueCidr24()},
  })
/** `token` makes it (default: the tenant owner); the revoke routes' cells use the caller's own. */
const freshInvite = async (t: TenantWorld, token = t.ownerToken) =>
  (
    await world.api.ok<{invite: {id: string}}>('invite.create', {
      token,
      params: {network: t.net.id},
      body: {},
    })
  ).invite
const freshAuthKey = async (t: TenantWorld, token = t.ownerToken) =>
  (
    await world.api.ok<{authKey: {id: string}}>('authkey.create', {
      token,
      params: {network: t.net.id},
      body: {},
    })
  ).authKey
/** A user invite of tenant `t` (default: made by its owner) and its code. */
const freshUserInvite = async (t: TenantWorld, token = t.ownerToken) =>
  world.api.ok<{invite: {id: string}; code: string}>('userinvite.create', {token, body: {role: 'guest'}})
const freshNode = async (t: TenantWorld) =>
  (await world.api.ok<{node: {id: string}}>('register', {body: registerBody({authKey: t.authKey})})).node
const registerWithCredential = (authKey: string) =>
  world.api.ok<{node: {id: string; status: string}; credential: string}>('register', {
    body: registerBody({authKey}),
  })
async function freshPendingNode(t: TenantWorld) {
  const {node} = await world.api.ok<{node: {id: string; status: string}}>('register', {
    body: registerBody({authKey: t.approvalKey}),
  })
  if (node.status !== 'pending') throw new Error(`fixture: expected a pending node, got ${node.status}`)
  return node
}

/** The caller's token when it is of tenant `t` and its role may create via `id`, else t's owner's. */
function creatorToken(t: TenantWorld, caller: Caller, id: RouteId): string {
  if (t !== world.A || !(caller in world.callers)) return t.ownerToken
  const perm = (ROUTES[id] as RouteDef).permission
  return perm && roleAllows(caller as Role, perm) ? world.callers[caller as Role].token : t.ownerToken
}

/**
 * How to call each route for one cell: the request (without the caller's token) against an
 * object of tenant `t`. Destructive routes make a fresh object per cell. `token` overrides the
 * caller's token where the route consumes it (logout).
 */
type Fixture = (t: TenantWorld, caller: Caller) => Promise<CallOptions & {tokenOverride?: string}>

const FIXTURES = {
  login: async (_t, caller) => ({
    body: {
      username: world.callers[caller in world.callers ? (caller as Role) : 'owner'].username,
      password: PASSWORD,
    },
  }),
  logout: async (_t, caller) =>
    caller in world.callers ? {tokenOverride: await login(world.callers[caller as Role].username)} : {},
  whoami: async () => ({}),
  'tenant.create': async () => ({
    body: {name: uniqueName('t'), owner: {username: uniqueName('o'), password: PASSWORD}},
  }),
  'user.list': async () => ({}),
  'user.create': async () => ({body: {username: uniqueName('u'), password: PASSWORD, role: 'guest'}}),
  'user.update': async (t) => ({params: {id: t.target.id}, body: {role: 'guest'}}),
  'user.delete': async (t) => ({params: {id: (await freshUser(t)).id}}),
  'network.list': async () => ({}),
  'network.create': async () => ({body: {name: uniqueName('net'), cidr: uniqueCidr24()}}),
  'network.show': async (t) => ({params: {network: t.net.id}}),
  'network.update': async (t) => ({
    params: {network: t.net.id},
    body: {description: `changed ${uniqueName('d')}`},
  }),
  'network.delete': async (t) => ({params: {network: (await freshNetwork(t)).id}}),
  'member.list': async (t) => ({params: {network: t.net.id}}),
  'member.set': async (t) => ({params: {network: t.net.id, id: t.target.id}, body: {role: 'member'}}),
  'member.remove': async (t) => {
    const user = await freshUser(t)
    await world.api.ok('member.set', {
      token: t.ownerToken,
      params: {network: t.net.id, id: user.id},
      body: {role: 'guest'},
    })
    return {params: {network: t.net.id, id: user.id}}
  },
  'invite.list': async (t) => ({params: {network: t.net.id}}),
  'invite.create': async (t) => ({params: {network: t.net.id}, body: {}}),
  // The caller's own object where it may make one (revoking another user's: FLAG_CASES).
  'invite.revoke': async (t, caller) => ({
    params: {id: (await freshInvite(t, creatorToken(t, caller, 'invite.create'))).id},
  }),
  'authkey.list': async (t) => ({params: {network: t.net.id}}),
  'authkey.create': async (t) => ({params: {network: t.net.id}, body: {}}),
  'authkey.revoke': async (t, caller) => ({
    params: {id: (await freshAuthKey(t, creatorToken(t, caller, 'authkey.create'))).id},
  }),
  'relaykey.list': async () => ({}),
  'relaykey.create': async () => ({body: {region: 'eu'}}),
  'relaykey.revoke': async () => ({
    params: {
      id: (
        await world.api.ok<{relayKey: {id: string}}>('relaykey.create', {
          token: world.superToken,
          body: {region: 'eu'},
        })
      ).relayKey.id,
    },
  }),
  'node.list': async (t) => ({params: {network: t.net.id}}),
  'connection.list': async (t) => ({params: {network: t.net.id}}),
  'connection.log': async (t) => ({params: {network: t.net.id}, query: {limit: '5'}}),
  'node.show': async (t) => ({params: {id: t.node.id}}),
  'node.approve': async (t) => ({params: {id: (await freshPendingNode(t)).id}}),
  'node.update': async (t) => ({params: {id: t.node.id}, body: {name: uniqueName('renamed')}}),
  'node.remove': async (t) => ({params: {id: (await freshNode(t)).id}}),
  // A user token is no node credential: every cell is 401 (the node's own call is tested below).
  'node.leave': async () => ({}),
  register: async () => ({body: registerBody({authKey: world.A.authKey})}),
  audit: async () => ({}),
  'audit.verify': async () => ({}),
  'policy.get': async () => ({}),
  'policy.set': async () => ({body: {document: '{"acls": [{"src": ["*"], "dst": ["*:*"]}]}'}}),
  'policy.delete': async () => ({}),
  'policy.check': async () => ({body: {document: '{"acls": []}'}}),
  // A refresh token needs no other credential: every cell is 200 with a fresh, unused one.
  'token.refresh': async (_t, caller) => ({
    body: {refreshToken: (await loginPair(callerName(world.A, caller))).refreshToken},
  }),
  'session.list': async () => ({}),
  // The caller's own fresh session in tenant A; tenant B's owner's session on the other side.
  'session.revoke': async (t, caller) => ({
    params: {id: (await loginPair(callerName(t, caller))).sessionId},
  }),
  // MFA routes act on the caller's own account: a fresh account per cell, so that no caller of
  // the matrix ends up with MFA on (its later logins would need codes).
  'mfa.enable': async (_t, caller) => (caller in world.callers ? {tokenOverride: await freshPerson()} : {}),
  'mfa.confirm': async (_t, caller) => {
    if (!(caller in world.callers)) return {body: {code: '000000'}}
    const token = await freshPerson()
    const {secret} = await world.api.ok<{secret: string}>('mfa.enable', {token})
    return {tokenOverride: token, body: {code: totpCode(secret, Date.now())}}
  },
  'node.expire': async (t) => ({params: {id: (await freshNode(t)).id}}),
  'node.extend': async (t) => ({params: {id: (await freshNode(t)).id}, body: {by: 86_400}}),
  // A user token is no node credential: every cell is 401 (as for node.leave).
  'node.rotateKey': async () => ({body: {publicKey: Buffer.alloc(32, 7).toString('base64')}}),
  'tenant.keyExpiry': async () => ({}),
  'tenant.setKeyExpiry': async () => ({body: {days: 180}}),
  'mfa.disable': async (_t, caller) => {
    if (!(caller in world.callers)) return {body: {code: '000000'}}
    const token = await freshPerson()
    const {secret} = await world.api.ok<{secret: string}>('mfa.enable', {token})
    const {recoveryCodes} = await world.api.ok<{recoveryCodes: string[]}>('mfa.confirm', {
      token,
      body: {code: totpCode(secret, Date.now())},
    })
    return {tokenOverride: token, body: {code: recoveryCodes[0]!}}
  },
  'userinvite.list': async () => ({}),
  'userinvite.create': async () => ({body: {role: 'guest'}}),
  'userinvite.revoke': async (t, caller) => ({
    params: {id: (await freshUserInvite(t, creatorToken(t, caller, 'userinvite.create'))).invite.id},
  }),
  // The invite is the credential: every cell is 201 with a fresh invite and a new name.
  signup: async () => ({
    body: {invite: (await freshUserInvite(world.A)).code, username: uniqueName('s'), password: PASSWORD},
  }),
  // OIDC routes have no caller (the flow handle is the credential): a fresh flow per cell.
  'oidc.issuers': async () => ({}),
  'oidc.start': async () => ({body: {redirectUri: OIDC_REDIRECT}}),
  'oidc.finish': async () => {
    const start = await world.api.ok<{flowId: string; authorizationUrl: string}>('oidc.start', {
      body: {redirectUri: OIDC_REDIRECT},
    })
    const {callbackUrl} = await browse(start.authorizationUrl, {login: uniqueName('oidc')})
    return {body: {flowId: start.flowId, callbackUrl: callbackUrl!}}
  },
  'oidc.device': async () => ({body: {}}),
  'oidc.device.poll': async () => ({
    body: {flowId: (await world.api.ok<{flowId: string}>('oidc.device', {body: {}})).flowId},
  }),
} satisfies Record<RouteId, Fixture>

// ---------------------------------------------------------------------------------------------
// The expectation, from the route table and ROLE_PERMISSIONS only.

function expectedStatus(id: RouteId, caller: Caller, side: Side): number {
  const r: RouteDef = ROUTES[id]
  if (r.auth === 'none') return r.status
  if (caller === 'anonymous') return 401
  if (r.auth === 'superuser') return caller === 'superuser' ? r.status : 403
  if (r.auth === 'node') return 401 // a user token is not a node credential
  if (caller === 'superuser') throw new Error('superuser cells exist only for superuser routes')
  if (side.startsWith('other')) return 404
  if (r.permission && !roleAllows(caller, r.permission)) return 403
  return r.status
}

const EXPECTED_CODE: Record<number, string> = {401: 'UNAUTHENTICATED', 403: 'FORBIDDEN', 404: 'NOT_FOUND'}

interface Cell {
  name: string
  id: RouteId
  caller: Caller
  side: Side
  expected: number
}

const cells: Cell[] = []
for (const id of Object.keys(ROUTES) as RouteId[]) {
  const r = ROUTES[id]
  const callers: Caller[] = [...ROLES, 'anonymous']
  if (r.auth === 'superuser') callers.push('superuser')
  // Routes that name an object (path params) are tried on tenant B's object too.
  const sides: Side[] = !('params' in r)
    ? ['own']
    : r.path.includes(':network')
      ? ['own', 'own-by-name', 'other', 'other-by-name']
      : ['own', 'other']
  for (const caller of callers)
    for (const side of sides) {
      const expected = expectedStatus(id, caller, side)
      const whose = {
        own: "its tenant's object",
        'own-by-name': "its tenant's network by name",
        other: "tenant B's object",
        'other-by-name': "tenant B's network by name",
      }[side]
      cells.push({
        name: `${id} (${r.method} ${r.path}) as ${caller} on ${whose} → ${expected}`,
        id,
        caller,
        side,
        expected,
      })
    }
}

// ---------------------------------------------------------------------------------------------
// Request flags: what a request asks for can need more than its route's permission. Each case
// names its extra rule; the expectation comes from ROLE_PERMISSIONS and ROLE_RANK only. The
// route's own permission is checked first (403 FORBIDDEN), then the case's rule.

type Refusal = {status: 403; code: 'FORBIDDEN' | 'ROLE_TOO_HIGH' | 'OUTRANKED'} | undefined

interface FlagCase {
  /** What the request asks for, as the test name says it. */
  what: string
  id: RouteId
  /** The request for one caller of tenant A (without its token). */
  fixture: (caller: Role) => Promise<CallOptions>
  /** The case's extra rule for a caller that has the route's permission. */
  refusal: (caller: Role) => Refusal
}

const FORBIDDEN_403 = {status: 403, code: 'FORBIDDEN'} as const
const outranks = (role: Role, caller: Role) => ROLE_RANK[role] > ROLE_RANK[caller]

const FLAG_CASES: FlagCase[] = [
  {
    what: 'preApproved:true (needs node.approve)',
    id: 'authkey.create',
    fixture: async () => ({params: {network: world.A.approvalNet.id}, body: {preApproved: true}}),
    refusal: (caller) => (roleAllows(caller, 'node.approve') ? undefined : FORBIDDEN_403),
  },
  {
    what: 'preApproved:false',
    id: 'authkey.create',
    fixture: async () => ({params: {network: world.A.approvalNet.id}, body: {preApproved: false}}),
    refusal: () => undefined,
  },
  ...ROLES.map((role): FlagCase => ({
    what: `role:${role} (no role above the creator's)`,
    id: 'invite.create',
    fixture: async () => ({params: {network: world.A.net.id}, body: {role}}),
    refusal: (caller) => (outranks(role, caller) ? {status: 403, code: 'ROLE_TOO_HIGH'} : undefined),
  })),
  {
    what: "of an invite the owner created (another user's: needs moderator)",
    id: 'invite.revoke',
    fixture: async () => ({params: {id: (await freshInvite(world.A)).id}}),
    refusal: (caller) => (outranks('moderator', caller) ? FORBIDDEN_403 : undefined),
  },
  {
    what: 'of an invite the caller created itself',
    id: 'invite.revoke',
    fixture: async (caller) => ({
      params: {id: (await freshInvite(world.A, creatorToken(world.A, caller, 'invite.create'))).id},
    }),
    refusal: () => undefined,
  },
  {
    what: "of an auth key the owner created (another user's: needs admin)",
    id: 'authkey.revoke',
    fixture: async () => ({params: {id: (await freshAuthKey(world.A)).id}}),
    refusal: (caller) => (outranks('admin', caller) ? FORBIDDEN_403 : undefined),
  },
  {
    what: 'of an auth key the caller created itself',
    id: 'authkey.revoke',
    fixture: async (caller) => ({
      params: {id: (await freshAuthKey(world.A, creatorToken(world.A, caller, 'authkey.create'))).id},
    }),
    refusal: () => undefined,
  },
]

/** A fresh user of tenant A with tenant role `role`, and optionally a role on A's network. */
async function freshUserOfRole(role: Role, networkRole?: Role): Promise<{id: string}> {
  const user = await world.api.ok<{id: string}>('user.create', {
    token: world.A.ownerToken,
    body: {username: uniqueName(role), password: PASSWORD, role},
  })
  if (networkRole) {
    await world.api.ok('member.set', {
      token: world.A.ownerToken,
      params: {network: world.A.net.id, id: user.id},
      body: {role: networkRole},
    })
  }
  return user
}

/** Ranks, each user protected by the higher of its tenant and network role (equal may act). */
const ROLE_TOO_HIGH_403 = {status: 403, code: 'ROLE_TOO_HIGH'} as const
const OUTRANKED_403 = {status: 403, code: 'OUTRANKED'} as const
const grantRefusal = (role: Role, caller: Role): Refusal =>
  outranks(role, caller) ? ROLE_TOO_HIGH_403 : undefined

FLAG_CASES.push(
  ...ROLES.map((role): FlagCase => ({
    what: `role:${role} for a tenant member (no role above the caller's)`,
    id: 'member.set',
    fixture: async () => ({
      params: {network: world.A.net.id, id: (await freshUserOfRole('member')).id},
      body: {role},
    }),
    refusal: (caller) => grantRefusal(role, caller),
  })),
  ...ROLES.map((target): FlagCase => ({
    what: `role:guest for a tenant ${target} (nobody who outranks the caller)`,
    id: 'member.set',
    fixture: async () => ({
      params: {network: world.A.net.id, id: (await freshUserOfRole(target)).id},
      body: {role: 'guest'},
    }),
    refusal: (caller) => (outranks(target, caller) ? OUTRANKED_403 : undefined),
  })),
  {
    what: 'of a tenant owner already lowered to guest there (its tenant role still counts)',
    id: 'member.remove',
    fixture: async () => ({
      params: {network: world.A.net.id, id: (await freshUserOfRole('owner', 'guest')).id},
    }),
    refusal: (caller) => (outranks('owner', caller) ? OUTRANKED_403 : undefined),
  },
  {
    what: 'of a tenant guest raised to admin there',
    id: 'member.remove',
    fixture: async () => ({
      params: {network: world.A.net.id, id: (await freshUserOfRole('guest', 'admin')).id},
    }),
    refusal: (caller) => (outranks('admin', caller) ? OUTRANKED_403 : undefined),
  },
  ...ROLES.map((role): FlagCase => ({
    what: `role:${role}`,
    id: 'user.create',
    fixture: async () => ({body: {username: uniqueName('u'), password: PASSWORD, role}}),
    refusal: (caller) => grantRefusal(role, caller),
  })),
  {
    what: 'of another tenant owner to guest (equal rank may)',
    id: 'user.update',
    fixture: async () => ({params: {id: (await freshUserOfRole('owner')).id}, body: {role: 'guest'}}),
    refusal: (caller) => (outranks('owner', caller) ? OUTRANKED_403 : undefined),
  },
  ...ROLES.map((role): FlagCase => ({
    what: `role:${role} (no role above the inviter's)`,
    id: 'userinvite.create',
    fixture: async () => ({body: {role}}),
    refusal: (caller) => grantRefusal(role, caller),
  })),
  {
    what: 'of a tenant admin to guest (equal rank may: admins manage admins, as in Tailscale)',
    id: 'user.update',
    fixture: async () => ({params: {id: (await freshUserOfRole('admin')).id}, body: {role: 'guest'}}),
    refusal: (caller) => (outranks('admin', caller) ? OUTRANKED_403 : undefined),
  },
  {
    what: 'of another tenant owner',
    id: 'user.delete',
    fixture: async () => ({params: {id: (await freshUserOfRole('owner')).id}}),
    refusal: (caller) => (outranks('owner', caller) ? OUTRANKED_403 : undefined),
  },
)

interface FlagCell {
  name: string
  flagCase: FlagCase
  caller: Role
  expected: {status: number; code?: string}
}

const flagCells: FlagCell[] = FLAG_CASES.flatMap((flagCase) =>
  ROLES.map((caller): FlagCell => {
    const r: RouteDef = ROUTES[flagCase.id]
    const expected: FlagCell['expected'] =
      r.permission && !roleAllows(caller, r.permission)
        ? FORBIDDEN_403
        : (flagCase.refusal(caller) ?? {status: r.status})
    const shown = expected.code ? `${expected.status} ${expected.code}` : `${expected.status}`
    return {
      name: `${flagCase.id} ${flagCase.what} as ${caller} → ${shown}`,
      flagCase,
      caller,
      expected,
    }
  }),
)

/** Ids of tenant B objects that must never show up in tenant A's lists. */
function leaks(id: RouteId, reply: HttpReply): string[] {
  const items = (reply.json as {items?: {id?: unknown; tenantId?: unknown}[]} | undefined)?.items ?? []
  const foreign = new Set<unknown>([world.B.id, ...world.B.networkIds, ...world.B.userIds])
  if (id === 'audit') return items.filter((e) => e.tenantId === world.B.id).map((e) => String(e.id))
  return items.filter((e) => foreign.has(e.id) || foreign.has(e.tenantId)).map((e) => String(e.id))
}

describe('controller authorization matrix', () => {
  beforeAll(async () => {
    idp = await startTestIdp()
    ctl = await startTestController({
      // Every cell starts its own login from 127.0.0.1.
      oidc: {
        issuers: [{name: 'corp', issuer: idp.issuer, clientId: TEST_CLIENT_ID, allowHttp: true}],
        pendingPerAddress: 1000,
      },
    })
    const api = new Api(ctl.url, agent)
    const superToken = ctl.adminToken
    const A = await makeTenant(api, superToken)
    const B = await makeTenant(api, superToken)
    world = {api, superToken, A, B, callers: {} as World['callers']}
    world.callers.owner = {id: A.ownerId, username: A.ownerName, token: A.ownerToken}
    for (const role of ['admin', 'moderator', 'member', 'guest'] as const) {
      const username = uniqueName(role)
      const user = await api.ok<{id: string}>('user.create', {
        token: A.ownerToken,
        body: {username, password: PASSWORD, role},
      })
      A.userIds.push(user.id)
      world.callers[role] = {id: user.id, username, token: await login(username)}
    }
  })

  afterAll(async () => {
    await ctl?.close()
    await idp?.close()
    await agent.close()
  })

  it('has a fixture for every ROUTES entry, so a new route cannot skip the matrix', () => {
    const missing = Object.keys(ROUTES).filter((id) => !Object.hasOwn(FIXTURES, id))
    expect(missing).toEqual([])
  })

  it('refuses to give a user of another tenant a role on its own network (404)', async () => {
    const reply = await world.api.call('member.set', {
      token: world.A.ownerToken,
      params: {network: world.A.net.id, id: world.B.target.id},
      body: {role: 'admin'},
    })
    expect(reply.status, reply.text).toBe(404)
    expect(errorCode(reply)).toBe('NOT_FOUND')
  })

  it('lets a network role raise a tenant guest on that network only', async () => {
    const {api, A, callers} = world
    const net = await freshNetwork(A)
    await api.ok('member.set', {
      token: A.ownerToken,
      params: {network: net.id, id: callers.guest.id},
      body: {role: 'admin'},
    })
    const {key} = await api.ok<{key: string}>('authkey.create', {
      token: A.ownerToken,
      params: {network: net.id},
      body: {preApproved: true},
    })
    const {node} = await api.ok<{node: {id: string}}>('register', {body: registerBody({authKey: key})})
    const there = await api.call('node.remove', {token: callers.guest.token, params: {id: node.id}})
    expect(there.status, there.text).toBe(200)
    const elsewhere = await api.call('node.remove', {
      token: callers.guest.token,
      params: {id: (await freshNode(A)).id},
    })
    expect(elsewhere.status, elsewhere.text).toBe(403)
  })

  it('lets a network role lower a tenant admin on that network only', async () => {
    const {api, A, callers} = world
    const net = await freshNetwork(A)
    await api.ok('member.set', {
      token: A.ownerToken,
      params: {network: net.id, id: callers.admin.id},
      body: {role: 'guest'},
    })
    const there = await api.call('network.update', {
      token: callers.admin.token,
      params: {network: net.id},
      body: {description: 'not allowed'},
    })
    expect(there.status, there.text).toBe(403)
    const elsewhere = await api.call('network.update', {
      token: callers.admin.token,
      params: {network: A.net.id},
      body: {description: 'allowed'},
    })
    expect(elsewhere.status, elsewhere.text).toBe(200)
  })

  it("keeps another tenant's entries out of the audit log, also when filtered by its network", async () => {
    const reply = await world.api.call('audit', {
      token: world.A.ownerToken,
      query: {network: world.B.net.id},
    })
    // Either the network is unknown here (404) or the page holds none of tenant B's entries.
    if (reply.status !== 404) {
      expect(reply.status, reply.text).toBe(200)
      expect(leaks('audit', reply)).toEqual([])
      expect((reply.json as {items: unknown[]}).items).toEqual([])
    } else expect(errorCode(reply)).toBe('NOT_FOUND')
  })

  it("shows no other tenant's nodes on the admin event stream", async () => {
    const ws = new WebSocket(world.api.url.replace(/^http/, 'ws') + WS_PATHS.events, {
      headers: {authorization: `Bearer ${world.callers.guest.token}`},
    })
    const frames: {type: string; nodes?: {networkId: string}[]; networkId?: string; node?: {id: string}}[] =
      []
    ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString())))
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no snapshot within 5 s')), 5_000)
        const poll = setInterval(() => {
          if (frames.length > 0) {
            clearTimeout(timer)
            clearInterval(poll)
            resolve()
          }
        }, 10)
        ws.once('close', (code) => reject(new Error(`event stream closed with ${code}`)))
      })
      expect(frames[0]!.type).toBe('snapshot')
      const bNetworks = new Set(world.B.networkIds)
      expect(frames[0]!.nodes!.filter((n) => bNetworks.has(n.networkId))).toEqual([])
      const mine = await freshNode(world.A)
      const theirs = await freshNode(world.B)
      const deadline = Date.now() + 5_000
      while (Date.now() < deadline && !frames.some((f) => f.node?.id === mine.id))
        await new Promise((r) => setTimeout(r, 20))
      // Events arrive in commit order: once A's later-or-concurrent node is here, B's would be too.
      await new Promise((r) => setTimeout(r, 300))
      expect(frames.some((f) => f.node?.id === mine.id)).toBe(true)
      expect(
        frames.filter((f) => f.node?.id === theirs.id || (f.networkId && bNetworks.has(f.networkId))),
      ).toEqual([])
    } finally {
      ws.terminate()
    }
  })

  it("gives a node only its own network's active peers, and no other network's changes", async () => {
    const {api, A, B} = world
    const self = await registerWithCredential(A.authKey)
    const netmap = openStream(api.url, WS_PATHS.netmap, self.credential)
    try {
      const full = await netmap.waitFor((f) => f.type === 'full')
      const listed = await api.ok<{items: {id: string; status: string}[]}>('node.list', {
        token: A.ownerToken,
        params: {network: A.net.id},
        query: {limit: '500'},
      })
      const activeIds = new Set(listed.items.filter((n) => n.status === 'active').map((n) => n.id))
      const peers = (full.peers as {id: string}[]).map((p) => p.id)
      expect(peers.filter((id) => !activeIds.has(id))).toEqual([])
      expect(peers).not.toContain(self.node.id)
      const foreign = [
        (await registerWithCredential(B.authKey)).node.id,
        (await registerWithCredential(A.approvalKey)).node.id,
      ]
      const neighbour = await registerWithCredential(A.authKey)
      await netmap.waitFor((f) => JSON.stringify(f).includes(neighbour.node.id))
      await new Promise((r) => setTimeout(r, 200))
      const seen = JSON.stringify(netmap.frames)
      for (const id of foreign) expect(seen).not.toContain(id)
    } finally {
      netmap.close()
    }
  })

  it('keeps a pending node out of every netmap until it is approved', async () => {
    const {api, A} = world
    const first = await registerWithCredential(A.approvalKey)
    await api.ok('node.approve', {token: A.ownerToken, params: {id: first.node.id}})
    const pending = await registerWithCredential(A.approvalKey)
    const active = openStream(api.url, WS_PATHS.netmap, first.credential)
    const waiting = openStream(api.url, WS_PATHS.netmap, pending.credential)
    try {
      const pendingFull = await waiting.waitFor((f) => f.type === 'full')
      expect((pendingFull.self as {status: string}).status).toBe('pending')
      expect(pendingFull.peers).toEqual([])
      const activeFull = await active.waitFor((f) => f.type === 'full')
      expect(JSON.stringify(activeFull.peers)).not.toContain(pending.node.id)
      expect(JSON.stringify(active.frames)).not.toContain(pending.credential)

      await api.ok('node.approve', {token: A.ownerToken, params: {id: pending.node.id}})
      await active.waitFor(
        (f) => f.type === 'delta' && JSON.stringify(f.added ?? f.changed ?? []).includes(pending.node.id),
      )
      await waiting.waitFor(
        (f) => JSON.stringify(f.peers ?? f.added ?? f.changed ?? []).includes(first.node.id),
        5_000,
        1,
      )
    } finally {
      active.close()
      waiting.close()
    }
  })

  it("revokes a removed node's netmap at once and refuses its credential afterwards", async () => {
    const {api, A} = world
    const doomed = await registerWithCredential(A.authKey)
    const netmap = openStream(api.url, WS_PATHS.netmap, doomed.credential)
    try {
      await netmap.waitFor((f) => f.type === 'full')
      await api.ok('node.remove', {token: A.ownerToken, params: {id: doomed.node.id}})
      await netmap.waitFor((f) => f.type === 'revoked', 5_000, 1).catch(() => undefined)
      expect(await netmap.closed()).toBe(CLOSE.REVOKED)
    } finally {
      netmap.close()
    }
    const again = openStream(api.url, WS_PATHS.netmap, doomed.credential)
    try {
      expect(await again.closed()).toBe(CLOSE.UNAUTHENTICATED)
      expect(again.frames).toEqual([])
    } finally {
      again.close()
    }
  })

  it('lets a node remove itself with its credential: peers get a removal, its netmap is revoked, node.leave is audited', async () => {
    const {api, A} = world
    const leaver = await registerWithCredential(A.authKey)
    const peer = await registerWithCredential(A.authKey)
    const leaverMap = openStream(api.url, WS_PATHS.netmap, leaver.credential)
    const peerMap = openStream(api.url, WS_PATHS.netmap, peer.credential)
    try {
      await leaverMap.waitFor((f) => f.type === 'full')
      await peerMap.waitFor((f) => f.type === 'full')
      const reply = await api.call('node.leave', {token: leaver.credential})
      expect(reply.status, reply.text).toBe(200)
      expect(reply.json).toEqual({ok: true})
      await peerMap.waitFor(
        (f) => f.type === 'delta' && ((f.removed as string[] | undefined) ?? []).includes(leaver.node.id),
      )
      expect(await leaverMap.closed()).toBe(CLOSE.REVOKED)
    } finally {
      leaverMap.close()
      peerMap.close()
    }
    const shown = await api.call('node.show', {token: A.ownerToken, params: {id: leaver.node.id}})
    expect(shown.status).toBe(404)
    const again = await api.call('node.leave', {token: leaver.credential})
    expect(again.status).toBe(401)
    expect(errorCode(again)).toBe('NODE_CREDENTIAL_INVALID')
    const audit = await api.ok<{items: {action: string; actor: string; targetId: string | null}[]}>('audit', {
      token: A.ownerToken,
      query: {actor: `node:${leaver.node.id}`},
    })
    expect(audit.items.filter((e) => e.targetId === leaver.node.id).map((e) => e.action)).toContain(
      'node.leave',
    )
  })

  it('keeps a node registered with a member-made auth key pending on an approval network', async () => {
    const {api, A, callers} = world
    const {key} = await api.ok<{key: string}>('authkey.create', {
      token: callers.member.token,
      params: {network: A.approvalNet.id},
      body: {},
    })
    const {node} = await api.ok<{node: {status: string}}>('register', {body: registerBody({authKey: key})})
    expect(node.status).toBe('pending')
  })

  it('refuses a tenant admin demoting the tenant owner on a network or making itself owner there; the owner keeps its access', async () => {
    const {api, A, callers} = world
    const net = await freshNetwork(A)
    const demote = await api.call('member.set', {
      token: callers.admin.token,
      params: {network: net.id, id: callers.owner.id},
      body: {role: 'guest'},
    })
    expect([demote.status, errorCode(demote)], demote.text).toEqual([403, 'OUTRANKED'])
    expect(wireErrorProblem(demote)).toBeUndefined()
    const promote = await api.call('member.set', {
      token: callers.admin.token,
      params: {network: net.id, id: callers.admin.id},
      body: {role: 'owner'},
    })
    expect([promote.status, errorCode(promote)], promote.text).toEqual([403, 'ROLE_TOO_HIGH'])
    const members = await api.ok<{items: {userId: string; role: string}[]}>('member.list', {
      token: A.ownerToken,
      params: {network: net.id},
    })
    expect(members.items).toEqual([])
    // The owner still configures the network, sees its members and sets its own role there.
    await api.ok('network.update', {
      token: callers.owner.token,
      params: {network: net.id},
      body: {description: 'still mine'},
    })
    await api.ok('member.set', {
      token: callers.owner.token,
      params: {network: net.id, id: callers.owner.id},
      body: {role: 'owner'},
    })
    const removeOwner = await api.call('member.remove', {
      token: callers.admin.token,
      params: {network: net.id, id: callers.owner.id},
    })
    expect([removeOwner.status, errorCode(removeOwner)]).toEqual([403, 'OUTRANKED'])
  })

  it('lets a tenant admin raised to owner on one network act as owner there only', async () => {
    const {api, A, callers} = world
    const net = await freshNetwork(A)
    await api.ok('member.set', {
      token: A.ownerToken,
      params: {network: net.id, id: callers.admin.id},
      body: {role: 'owner'},
    })
    const peer = await freshUserOfRole('admin')
    const there = await api.call('member.set', {
      token: callers.admin.token,
      params: {network: net.id, id: peer.id},
      body: {role: 'owner'},
    })
    expect(there.status, there.text).toBe(200)
    const elsewhere = await api.call('member.set', {
      token: callers.admin.token,
      params: {network: A.net.id, id: peer.id},
      body: {role: 'owner'},
    })
    expect([elsewhere.status, errorCode(elsewhere)]).toEqual([403, 'ROLE_TOO_HIGH'])
  })

  it('refuses a tenant owner changing or deleting a superuser of its tenant (OUTRANKED)', async () => {
    const {api, superToken} = world
    const me = await api.ok<{user: {id: string}}>('whoami', {token: superToken})
    const ownerName = uniqueName('owner')
    await api.ok('user.create', {
      token: superToken,
      body: {username: ownerName, password: PASSWORD, role: 'owner'},
    })
    const ownerToken = await login(ownerName)
    const update = await api.call('user.update', {
      token: ownerToken,
      params: {id: me.user.id},
      body: {role: 'guest'},
    })
    expect([update.status, errorCode(update)], update.text).toEqual([403, 'OUTRANKED'])
    const del = await api.call('user.delete', {token: ownerToken, params: {id: me.user.id}})
    expect([del.status, errorCode(del)], del.text).toEqual([403, 'OUTRANKED'])
    await api.ok('whoami', {token: superToken})
  })

  it.each(flagCells)('$name', async ({flagCase, caller, expected}) => {
    const opts = await flagCase.fixture(caller)
    const reply = await world.api.call(flagCase.id, {...opts, token: world.callers[caller].token})
    expect(reply.status, reply.text.slice(0, 300)).toBe(expected.status)
    if (expected.code) {
      expect(wireErrorProblem(reply)).toBeUndefined()
      expect(errorCode(reply)).toBe(expected.code)
    } else {
      const parsed = ROUTES[flagCase.id].response.safeParse(reply.json)
      expect(parsed.success, parsed.error?.message).toBe(true)
    }
  })

  it.each(cells)('$name', async ({id, caller, side, expected}) => {
    const t = side.startsWith('own') ? world.A : world.B
    const fixture = FIXTURES[id] as Fixture
    const {tokenOverride, ...opts} = await fixture(t, caller)
    const token =
      caller === 'anonymous'
        ? undefined
        : caller === 'superuser'
          ? world.superToken
          : (tokenOverride ?? world.callers[caller].token)
    if (side.endsWith('by-name') && opts.params?.network) {
      const net = await world.api.ok<{name: string}>('network.show', {
        token: t.ownerToken,
        params: {network: opts.params.network},
      })
      opts.params = {...opts.params, network: net.name}
    }
    const reply = await world.api.call(id, {...opts, token})

    expect(reply.status, reply.text.slice(0, 300)).toBe(expected)
    if (expected >= 400) {
      expect(wireErrorProblem(reply)).toBeUndefined()
      // A node route given a user token: a credential was sent, and it is not a node's.
      const code =
        ROUTES[id].auth === 'node' && token !== undefined
          ? 'NODE_CREDENTIAL_INVALID'
          : EXPECTED_CODE[expected]
      expect(errorCode(reply)).toBe(code)
    } else {
      const parsed = ROUTES[id].response.safeParse(reply.json)
      expect(parsed.success, parsed.error?.message).toBe(true)
      expect(leaks(id, reply)).toEqual([])
      // No reply carries a password hash or a stored secret hash, under any name.
      expect(reply.text).not.toMatch(/scrypt\$|passwordHash|password_hash|credentialHash|codeHash|keyHash/i)
    }
  })
})
