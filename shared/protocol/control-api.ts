/**
 * The controller's REST contract: zod schemas for every request and reply, and the route table
 * that the controller serves, the CLI calls, the OpenAPI document is generated from, and the
 * authorization matrix test walks. One schema per message; types are inferred, never hand-written.
 */
import {z} from 'zod'
import {IdSchema, NameSchema, NodeStatusSchema, PublicKeySchema} from './fields.js'
import {ENDPOINT_MAX_LENGTH, parseUsableEndpoint} from '../net/endpoint.js'
import {RELAY_WS_PATH} from '../relay/frame.js'
import {CONTROL_CHARACTERS_MESSAGE, hasNoControlCharacters} from '../text.js'
import {NatBehaviourSchema} from '../nat/behaviour.js'

// ---------------------------------------------------------------------------------------------
// Roles and permissions

/**
 * Tenant and network roles, highest first. `moderator` (GoConnect's) sits between admin and
 * member: it admits people and devices (invites, node approval and removal) but configures
 * nothing (networks, policy, users).
 */
export const ROLES = ['owner', 'admin', 'moderator', 'member', 'guest'] as const
export const RoleSchema = z.enum(ROLES)
export type Role = z.infer<typeof RoleSchema>

export const PERMISSIONS = [
  'network.create',
  'network.delete',
  'network.configure',
  'network.invite',
  'network.view',
  'node.register',
  'node.approve',
  'node.remove',
  'audit.view',
  'policy.manage',
  'tenant.manage',
  /** Invite people into the tenant (user invites), with a role up to the inviter's own. */
  'user.invite',
] as const
export type Permission = (typeof PERMISSIONS)[number]

/**
 * What each role may do. A user's role on a network is its network membership role when it has
 * one, else its tenant role. `node.register` covers creating auth keys (which register nodes);
 * a pre-approved key needs `node.approve` too. Revoking an invite someone else created needs
 * moderator rank on its network, a key admin rank; its creator may always revoke it.
 *
 * Admins hold `tenant.manage` (users and their roles), as in Tailscale, where admins manage users
 * and only the owner is out of their reach: ranks (ROLE_RANK) keep an admin from granting owner
 * or acting on an owner, and from anything on a user that outranks it.
 */
export const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  owner: PERMISSIONS,
  admin: [
    'network.create',
    'network.delete',
    'network.configure',
    'network.invite',
    'network.view',
    'node.register',
    'node.approve',
    'node.remove',
    'audit.view',
    'policy.manage',
    'tenant.manage',
    'user.invite',
  ],
  moderator: [
    'network.invite',
    'network.view',
    'node.register',
    'node.approve',
    'node.remove',
    'user.invite',
  ],
  member: ['network.invite', 'network.view', 'node.register'],
  guest: ['network.view'],
}

export const roleAllows = (role: Role, permission: Permission): boolean =>
  ROLE_PERMISSIONS[role].includes(permission)

/**
 * How far up each role stands: owner > admin > moderator > member > guest; a superuser stands above every
 * role. Nobody may grant a role above its own rank, nor change or remove the role of a user
 * that outranks it (an equal rank may: owners manage each other, so do admins).
 */
export const ROLE_RANK: Record<Role, number> = {guest: 0, member: 1, moderator: 2, admin: 3, owner: 4}
export const SUPERUSER_RANK = 5

// ---------------------------------------------------------------------------------------------
// Field schemas (the few meshd's local API shares live in fields.ts, re-exported here)

export {IdSchema, NAME_RE, NameSchema, NodeStatusSchema, PublicKeySchema, type NodeStatus} from './fields.js'

export const UsernameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, dot, dash, underscore; 1-63 characters')
export const PasswordSchema = z.string().min(8, 'at least 8 characters').max(1024)
/**
 * "host:port" with an IPv4 or bracketed IPv6 literal host and a port 1-65535, that another node
 * could send to (not loopback, link-local, multicast, broadcast or unspecified). The pattern is
 * for the OpenAPI document; shared/net/endpoint.ts (which meshd uses too) decides.
 */
export const EndpointSchema = z
  .string()
  .max(ENDPOINT_MAX_LENGTH)
  .regex(/^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/, 'an endpoint such as 203.0.113.7:51820')
  .refine(
    (s) => parseUsableEndpoint(s) !== null,
    'an endpoint such as 203.0.113.7:51820 or [2001:db8::1]:51820: an IP literal another node can reach, port 1-65535',
  )
export const TimestampSchema = z.string().describe('RFC 3339 time')
/**
 * Free text a person gives (network description) or a node reports (hostname, OS), in requests:
 * at most `max` characters, none that a terminal would act on or hide (controls, bidi and
 * zero-width characters, separators; shared/text.ts). Replies keep plain z.string() so rows
 * stored before this rule still read.
 */
export const freeText = (max: number) =>
  z.string().max(max).refine(hasNoControlCharacters, CONTROL_CHARACTERS_MESSAGE)
export const JoinPolicySchema = z.enum(['open', 'invite', 'approval'])
export type JoinPolicy = z.infer<typeof JoinPolicySchema>
export const TagSchema = z.string().regex(/^tag:[a-z0-9-]{1,62}$/, 'tags look like tag:name')
/** Durations in seconds for expiries: at least a minute, at most ten years. */
export const ExpiresInSchema = z
  .number()
  .int()
  .min(60)
  .max(10 * 365 * 86400)

export const PageQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: z.string().max(200).optional(),
})
export type PageQuery = z.infer<typeof PageQuerySchema>
export const page = <T extends z.ZodType>(item: T) =>
  z.object({items: z.array(item), nextCursor: z.string().nullable()})

// ---------------------------------------------------------------------------------------------
// Resources

export const TenantSchema = z.object({id: IdSchema, name: NameSchema, createdAt: TimestampSchema})
export type Tenant = z.infer<typeof TenantSchema>

export const UserSchema = z.object({
  id: IdSchema,
  tenantId: IdSchema,
  username: UsernameSchema,
  role: RoleSchema,
  superuser: z.boolean(),
  createdAt: TimestampSchema,
})
export type User = z.infer<typeof UserSchema>

export const NetworkSchema = z.object({
  id: IdSchema,
  tenantId: IdSchema,
  name: NameSchema,
  cidr: z.string(),
  description: z.string(),
  joinPolicy: JoinPolicySchema,
  maxNodes: z.number().int().nullable(),
  nodeCount: z.number().int(),
  createdAt: TimestampSchema,
})
export type Network = z.infer<typeof NetworkSchema>

export const NetworkMemberSchema = z.object({userId: IdSchema, username: UsernameSchema, role: RoleSchema})
export type NetworkMember = z.infer<typeof NetworkMemberSchema>

export const InviteSchema = z.object({
  id: IdSchema,
  networkId: IdSchema,
  role: RoleSchema,
  maxUses: z.number().int().nullable(),
  uses: z.number().int(),
  expiresAt: TimestampSchema,
  revokedAt: TimestampSchema.nullable(),
  createdAt: TimestampSchema,
  createdBy: IdSchema,
})
export type Invite = z.infer<typeof InviteSchema>

export const AuthKeySchema = z.object({
  id: IdSchema,
  networkId: IdSchema,
  /** The first characters of the key, enough to recognise it in a list. */
  prefix: z.string(),
  reusable: z.boolean(),
  ephemeral: z.boolean(),
  preApproved: z.boolean(),
  tags: z.array(TagSchema),
  uses: z.number().int(),
  expiresAt: TimestampSchema,
  revokedAt: TimestampSchema.nullable(),
  createdAt: TimestampSchema,
  createdBy: IdSchema,
})
export type AuthKey = z.infer<typeof AuthKeySchema>

export const NodeSchema = z.object({
  id: IdSchema,
  networkId: IdSchema,
  name: NameSchema,
  hostname: z.string(),
  os: z.string(),
  publicKey: PublicKeySchema,
  address: z.string(),
  status: NodeStatusSchema,
  online: z.boolean(),
  lastSeen: TimestampSchema.nullable(),
  endpoints: z.array(EndpointSchema),
  /**
   * The public address:port the controller observed for the node's WireGuard socket on its
   * endpoint-discovery port (NAT traversal); absent when none was observed.
   */
  observedEndpoint: z.string().max(64).optional(),
  /**
   * The NAT behaviour (RFC 4787 mapping and filtering) the node's netcheck last measured and
   * reported over its netmap session; absent when it reported none.
   */
  nat: NatBehaviourSchema.optional(),
  tags: z.array(TagSchema),
  ephemeral: z.boolean(),
  createdAt: TimestampSchema,
  /**
   * The user who let the node in (whose token registered it, or who made the invite or auth key
   * it used): what a policy's user names and groups match. Absent when unknown.
   */
  ownerId: IdSchema.optional(),
  /**
   * When the node's WireGuard key expires (issue 10): the controller then disables the node
   * (peers drop it, its sessions close with NODE_KEY_EXPIRED) until an admin extends it; a node
   * that rotates its key in time gets a new expiry. Null: never (tagged nodes, nodes from before
   * key expiry, nodes extended with --never). Absent from a controller older than the field.
   */
  keyExpiresAt: TimestampSchema.nullable().optional(),
})
export type Node = z.infer<typeof NodeSchema>

/**
 * How packets travel between two nodes: `direct` (WireGuard to the peer's endpoint), `relay`
 * (through the controller's relay) or `none` (no working path).
 */
export const PathSchema = z.enum(['direct', 'relay', 'none'])
export type Path = z.infer<typeof PathSchema>

/** A node named in a connection; `name` is null when the node was removed since. */
export const NodeRefSchema = z.object({id: IdSchema, name: z.string().nullable()})
export type NodeRef = z.infer<typeof NodeRefSchema>

/**
 * The current path between two nodes of a network, merged from what both report (see
 * controller/connections.ts). Only pairs with a working path are listed; `a.id < b.id`.
 */
export const ConnectionSchema = z.object({
  a: NodeRefSchema,
  b: NodeRefSchema,
  path: z.enum(['direct', 'relay']),
  /** Round trip in ms, as the nodes last measured it on `path`; null when not measured. */
  latencyMs: z.number().nullable(),
  /** The endpoint each side's WireGuard uses for the other (a: where a sends to b); null when none. */
  endpoints: z.object({a: z.string().nullable(), b: z.string().nullable()}),
  /** When the pair got its current path. */
  since: TimestampSchema,
  /** When this row was last written (path, latency or endpoint change). */
  updatedAt: TimestampSchema,
})
export type Connection = z.infer<typeof ConnectionSchema>

export const ConnectionEventSchema = z.enum([
  'connected',
  'disconnected',
  'upgraded_to_direct',
  'fell_back_to_relay',
])
export type ConnectionEvent = z.infer<typeof ConnectionEventSchema>

/** A pair's change of path: the fields a log entry and the `connection_changed` event share. */
export const ConnectionChangeSchema = z.object({
  at: TimestampSchema,
  /** The pair, a.id < b.id. */
  a: NodeRefSchema,
  b: NodeRefSchema,
  from: PathSchema,
  to: PathSchema,
  /** Round trip on `to` in ms; null when not measured (or `to` is none). */
  latencyMs: z.number().nullable(),
})

/** One entry of a network's connection log (newest first in replies). */
export const ConnectionLogEntrySchema = ConnectionChangeSchema.extend({
  id: z.number().int(),
  event: ConnectionEventSchema,
})
export type ConnectionLogEntry = z.infer<typeof ConnectionLogEntrySchema>

/** `mesh node show --json`: the node and its current connections. */
export const NodeDetailSchema = NodeSchema.extend({
  connections: z.array(
    z.object({
      peer: NodeRefSchema,
      path: z.enum(['direct', 'relay']),
      latencyMs: z.number().nullable(),
      /** The endpoint this node's WireGuard uses for the peer. */
      endpoint: z.string().nullable(),
      since: TimestampSchema,
    }),
  ),
})
export type NodeDetail = z.infer<typeof NodeDetailSchema>

export const AuditEntrySchema = z.object({
  id: z.number().int(),
  at: TimestampSchema,
  tenantId: IdSchema.nullable(),
  actor: z.string().describe('user:<id>, node:<id> or system'),
  actorName: z.string(),
  action: z.string().describe('e.g. network.create, node.register, invite.revoke'),
  targetType: z.string(),
  targetId: z.string().nullable(),
  networkId: IdSchema.nullable(),
  sourceAddress: z.string().nullable(),
  requestId: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()),
  /** Its link number in the tenant's hash chain; null for entries from before the chain. */
  seq: z.number().int().nullable().default(null),
})
export type AuditEntry = z.infer<typeof AuditEntrySchema>

/** The largest policy document the API takes (its JSON-escaped form fits the request limit). */
export const MAX_POLICY_BYTES = 512 * 1024
const PolicyDocumentSchema = z
  .string()
  .max(MAX_POLICY_BYTES)
  .describe('the policy: JSON with comments (groups, hosts, acls, tests)')

/** The tenant's ACL policy (`document` null: no policy, every node may reach every other). */
export const PolicyInfoSchema = z.object({
  document: z.string().nullable(),
  /** 0 when there is no policy; +1 per change. */
  version: z.number().int(),
  updatedAt: TimestampSchema.nullable(),
  updatedBy: IdSchema.nullable(),
})
export type PolicyInfo = z.infer<typeof PolicyInfoSchema>
export const PolicySetRequestSchema = z.object({
  document: PolicyDocumentSchema,
  /** Refuse (POLICY_VERSION_CONFLICT) unless the stored policy is at this version (0: none yet). */
  ifVersion: z.number().int().min(0).optional(),
})
export const PolicyCheckRequestSchema = z.object({document: PolicyDocumentSchema})
/** A document that passed: how many rules and tests it has (a failing one is a 400 with the problems). */
export const PolicyCheckResponseSchema = z.object({
  ok: z.literal(true),
  rules: z.number().int(),
  tests: z.number().int(),
})

/** `GET /api/v1/audit/verify`: the tenant's audit hash chain recomputed from its first link. */
export const AuditVerificationSchema = z.object({
  ok: z.boolean(),
  /** Links checked (up to and including the first mismatch). */
  checked: z.number().int(),
  /** Entries written before the chain existed (schema 0011), which it does not cover. */
  unchained: z.number().int(),
  /** The newest link that verified: keep it elsewhere; a later head must extend it. */
  head: z.object({id: z.number().int(), seq: z.number().int(), hash: z.string()}).nullable(),
  /** The first entry that does not match, and why. */
  mismatch: z
    .object({
      id: z.number().int(),
      seq: z.number().int(),
      reason: z.enum(['changed', 'unlinked', 'gap']),
      message: z.string(),
    })
    .optional(),
})
export type AuditVerification = z.infer<typeof AuditVerificationSchema>

// ---------------------------------------------------------------------------------------------
// Requests and replies

export const LoginRequestSchema = z.object({
  username: UsernameSchema,
  password: z.string().min(1).max(1024),
  /** The account's TOTP code, or one of its recovery codes, when it has MFA on (issue 10). */
  otp: z.string().min(1).max(64).optional(),
})
export const LoginResponseSchema = z.object({
  /** The access token (short-lived since schema 0014; `expiresAt` is its expiry). */
  token: z.string(),
  expiresAt: TimestampSchema,
  user: UserSchema,
  tenant: TenantSchema,
  /**
   * The refresh token of the new session and its (sliding) expiry, and the session's id.
   * Optional so a CLI can still log in to a controller from before schema 0014.
   */
  refreshToken: z.string().optional(),
  refreshExpiresAt: TimestampSchema.optional(),
  sessionId: IdSchema.optional(),
})
export type LoginResponse = z.infer<typeof LoginResponseSchema>
export const WhoamiResponseSchema = z.object({
  user: UserSchema,
  tenant: TenantSchema,
  /**
   * The user's OpenID Connect identities (issue 10) with the group claim of their last login;
   * absent for a user that never logged in with OIDC (and from controllers before it).
   */
  identities: z
    .array(z.object({provider: z.string(), issuer: z.string(), groups: z.array(z.string())}))
    .optional(),
})
export type WhoamiResponse = z.infer<typeof WhoamiResponseSchema>

export const CreateTenantRequestSchema = z.object({
  name: NameSchema,
  owner: z.object({username: UsernameSchema, password: PasswordSchema}),
})
export const CreateTenantResponseSchema = z.object({tenant: TenantSchema, owner: UserSchema})

export const CreateUserRequestSchema = z.object({
  username: UsernameSchema,
  password: PasswordSchema,
  role: RoleSchema,
})
/** A user's new tenant role, its new name (`mesh user rename`), or both; at least one. */
export const UpdateUserRequestSchema = z
  .object({role: RoleSchema.optional(), username: UsernameSchema.optional()})
  .refine((b) => b.role !== undefined || b.username !== undefined, {
    message: 'give role, username or both',
    path: ['role'],
  })

export const CreateNetworkRequestSchema = z.object({
  name: NameSchema,
  cidr: z.string().max(43),
  description: freeText(500).default(''),
  joinPolicy: JoinPolicySchema.default('invite'),
  maxNodes: z.number().int().min(1).max(1_000_000).nullable().default(null),
})
export type CreateNetworkRequest = z.input<typeof CreateNetworkRequestSchema>
export const UpdateNetworkRequestSchema = z
  .object({
    name: NameSchema,
    description: freeText(500),
    joinPolicy: JoinPolicySchema,
    maxNodes: z.number().int().min(1).max(1_000_000).nullable(),
  })
  .partial()
export type UpdateNetworkRequest = z.infer<typeof UpdateNetworkRequestSchema>

export const SetMemberRequestSchema = z.object({role: RoleSchema})

export const CreateInviteRequestSchema = z.object({
  expiresIn: ExpiresInSchema.default(7 * 86400),
  maxUses: z.number().int().min(1).max(1_000_000).nullable().default(1),
  role: RoleSchema.default('member'),
})
export type CreateInviteRequest = z.input<typeof CreateInviteRequestSchema>
export const CreateInviteResponseSchema = z.object({
  invite: InviteSchema,
  /** The secret code, shown once. */
  code: z.string(),
  /** One string holding the controller URL and the code: all `mesh join` needs. */
  joinString: z.string(),
})
export type CreateInviteResponse = z.infer<typeof CreateInviteResponseSchema>

export const CreateAuthKeyRequestSchema = z.object({
  reusable: z.boolean().default(false),
  ephemeral: z.boolean().default(false),
  preApproved: z.boolean().default(false),
  tags: z.array(TagSchema).max(32).default([]),
  expiresIn: ExpiresInSchema.default(90 * 86400),
})
export type CreateAuthKeyRequest = z.input<typeof CreateAuthKeyRequestSchema>
export const CreateAuthKeyResponseSchema = z.object({
  authKey: AuthKeySchema,
  /** The secret key, shown once. */
  key: z.string(),
})
export type CreateAuthKeyResponse = z.infer<typeof CreateAuthKeyResponseSchema>

/** Region names relays are listed under (nodes pick a home relay per region). */
export const RegionSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'lower-case letters, digits and dashes, at most 64')

/** A relay key: stand-alone relays of a region register with it (`mesh relay start --relay-key`). */
export const RelayKeySchema = z.object({
  id: IdSchema,
  name: z.string(),
  region: RegionSchema,
  /** The first characters of the key, enough to recognise it in a list. */
  prefix: z.string(),
  createdAt: TimestampSchema,
  /** The user who made it; null when imported from a DATA_DIR/relay-keys.json at start. */
  createdBy: IdSchema.nullable(),
  revokedAt: TimestampSchema.nullable(),
})
export type RelayKey = z.infer<typeof RelayKeySchema>
export const CreateRelayKeyRequestSchema = z.object({
  region: RegionSchema.default('default'),
  name: z.string().min(1).max(100).refine(hasNoControlCharacters, CONTROL_CHARACTERS_MESSAGE).optional(),
})
export type CreateRelayKeyRequest = z.input<typeof CreateRelayKeyRequestSchema>
export const CreateRelayKeyResponseSchema = z.object({
  relayKey: RelayKeySchema,
  /** The secret key, shown once. */
  key: z.string(),
})
export type CreateRelayKeyResponse = z.infer<typeof CreateRelayKeyResponseSchema>

/**
 * A node joins with exactly one of: an invite code, an auth key, or (networks with the `open`
 * policy only) the name or id of the network plus a user token with node.register in
 * `Authorization: Bearer`.
 */
export const RegisterRequestSchema = z
  .object({
    invite: z.string().min(1).max(200).optional(),
    authKey: z.string().min(1).max(200).optional(),
    network: z.string().min(1).max(100).optional(),
    publicKey: PublicKeySchema,
    name: NameSchema,
    hostname: freeText(253).default(''),
    os: freeText(64).default(''),
    endpoints: z.array(EndpointSchema).max(16).default([]),
  })
  .refine((r) => [r.invite, r.authKey, r.network].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of invite, authKey and network',
    path: ['invite'],
  })
export type RegisterRequest = z.input<typeof RegisterRequestSchema>
export const RegisterResponseSchema = z.object({
  node: NodeSchema,
  network: z.object({id: IdSchema, name: NameSchema, cidr: z.string()}),
  /** The node credential, shown once; the controller keeps only its hash. */
  credential: z.string(),
})
export type RegisterResponse = z.infer<typeof RegisterResponseSchema>

export const UpdateNodeRequestSchema = z.object({name: NameSchema})

export const AuditQuerySchema = PageQuerySchema.extend({
  since: z.string().max(40).optional().describe('RFC 3339 time or a duration such as 1h, 30m, 7d'),
  actor: z.string().max(100).optional().describe('user name, user:<id> or node:<id>'),
  network: z.string().max(100).optional().describe('network id or name'),
  afterSeq: z.coerce
    .number()
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .optional()
    .describe('only entries after this link of the hash chain, oldest first (to follow the log)'),
})

export const NodeListQuerySchema = PageQuerySchema.extend({
  status: NodeStatusSchema.optional(),
})

export const ConnectionListQuerySchema = PageQuerySchema.extend({
  node: IdSchema.optional().describe('only the connections of this node (id)'),
})
export const ConnectionLogQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(200).optional(),
  node: IdSchema.optional().describe('only the entries of this node (id)'),
})

export const OkSchema = z.object({ok: z.literal(true)})
export const HealthSchema = z.object({status: z.enum(['ok', 'unavailable'])})

// ---------------------------------------------------------------------------------------------
// Sessions, refresh tokens and MFA (issue 10)

export const RefreshRequestSchema = z.object({refreshToken: z.string().min(1).max(200)})
/** A new token pair for a session: the access token, the next refresh token, their expiries. */
export const TokenPairSchema = z.object({
  token: z.string(),
  expiresAt: TimestampSchema,
  refreshToken: z.string(),
  refreshExpiresAt: TimestampSchema,
  sessionId: IdSchema,
})
export type TokenPair = z.infer<typeof TokenPairSchema>
/** A login and the refresh tokens that followed it (one token family). */
export const SessionSchema = z.object({
  id: IdSchema,
  userId: IdSchema,
  createdAt: TimestampSchema,
  /** When the session last refreshed (its creation when it never did). */
  lastUsedAt: TimestampSchema,
  /** When its refresh token expires unless it is used before (sliding). */
  expiresAt: TimestampSchema,
  /** The client address of the login or of the last refresh. */
  sourceAddress: z.string().nullable(),
  /** The session of the token that asked. */
  current: z.boolean(),
})
export type Session = z.infer<typeof SessionSchema>
export const SessionListQuerySchema = z.object({
  user: IdSchema.optional().describe("another user's sessions (tenant.manage); default the caller's"),
})
export const SessionListSchema = z.object({items: z.array(SessionSchema)})
export const MfaEnableResponseSchema = z.object({
  /** The TOTP secret, base32 (for apps that cannot read the URI). */
  secret: z.string(),
  /** otpauth://totp/... for authenticator apps (RFC 6238: SHA-1, 6 digits, 30 s). */
  uri: z.string(),
})
export const MfaCodeRequestSchema = z.object({code: z.string().min(1).max(64)})
export const MfaConfirmResponseSchema = z.object({
  /** Ten single-use recovery codes: shown this once, stored only as hashes. */
  recoveryCodes: z.array(z.string()),
})

// ---------------------------------------------------------------------------------------------
// People join tenants by invite; removing a user and its nodes (issue 10)

/** A user invite: lets people make their own account in the tenant, with its role. */
export const UserInviteSchema = z.object({
  id: IdSchema,
  tenantId: IdSchema,
  /** The tenant role of the accounts made with it. */
  role: RoleSchema,
  maxUses: z.number().int().nullable(),
  uses: z.number().int(),
  expiresAt: TimestampSchema,
  revokedAt: TimestampSchema.nullable(),
  createdAt: TimestampSchema,
  createdBy: IdSchema,
})
export type UserInvite = z.infer<typeof UserInviteSchema>
export const CreateUserInviteRequestSchema = z.object({
  role: RoleSchema.default('member'),
  expiresIn: ExpiresInSchema.default(7 * 86400),
  maxUses: z.number().int().min(1).max(1_000_000).nullable().default(1),
})
export type CreateUserInviteRequest = z.input<typeof CreateUserInviteRequestSchema>
export const CreateUserInviteResponseSchema = z.object({
  invite: UserInviteSchema,
  /** The secret code, shown once. */
  code: z.string(),
  /** One string holding the controller URL and the code: all `mesh signup` needs. */
  inviteString: z.string(),
})
export type CreateUserInviteResponse = z.infer<typeof CreateUserInviteResponseSchema>
/**
 * Accepting a user invite with a password: the invite code and the new account's name and
 * password. An OIDC login carries an invite instead (OidcStartRequestSchema/OidcDeviceRequestSchema
 * `invite`) and reaches the same rule (domain/user-invites.ts) when it ends, so the invite is
 * spent in the same transaction as the account is made.
 */
export const SignupRequestSchema = z.object({
  invite: z.string().min(1).max(200),
  username: UsernameSchema,
  password: PasswordSchema,
})
export type SignupRequest = z.input<typeof SignupRequestSchema>

/** What happens to the nodes of a user who is deleted. */
export const UserNodesChoiceSchema = z.enum(['remove', 'reassign'])
export const DeleteUserQuerySchema = z.object({
  nodes: UserNodesChoiceSchema.optional().describe(
    'what happens to the nodes the user owns: remove them, or reassign them to `to`; without it a user who owns nodes is not deleted (USER_HAS_NODES)',
  ),
  to: IdSchema.optional().describe('with nodes=reassign: the user (id) who owns them next'),
})
export const DeleteUserResponseSchema = z.object({
  ok: z.literal(true),
  /** Ids of the nodes removed with the user. */
  removedNodes: z.array(IdSchema).default([]),
  /** Ids of the nodes that now belong to `to`. */
  reassignedNodes: z.array(IdSchema).default([]),
})
export type DeleteUserResponse = z.infer<typeof DeleteUserResponseSchema>
// OIDC login (issue 10): the controller is the OpenID client; the CLI only carries the browser's
// callback (authorization code with PKCE) or polls (device authorization).

export const OidcIssuerNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'an issuer name as configured on the controller')
export const OidcIssuerListSchema = z.object({
  items: z.array(z.object({name: OidcIssuerNameSchema, issuer: z.string()})),
})
const FlowIdSchema = z.string().min(1).max(200)
export const OidcStartRequestSchema = z.object({
  /** The configured issuer's name; default the first one. */
  issuer: OidcIssuerNameSchema.optional(),
  /** The CLI's loopback callback (RFC 8252 §7.3): http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH. */
  redirectUri: z.string().min(1).max(300),
  /** A user invite code (uinv_...): the login makes a new account with it (`mesh signup --oidc`). */
  invite: z.string().min(1).max(200).optional(),
})
export const OidcStartResponseSchema = z.object({
  /** The handle that finishes this login (secret: it stands for the PKCE verifier). */
  flowId: z.string(),
  issuer: OidcIssuerNameSchema,
  /** Where the person's browser goes. */
  authorizationUrl: z.string(),
  expiresAt: TimestampSchema,
})
export const OidcFinishRequestSchema = z.object({
  flowId: FlowIdSchema,
  /** The whole URL the browser came back to the callback with (code and state, or an error). */
  callbackUrl: z.string().min(1).max(8000),
})
export const OidcDeviceRequestSchema = z.object({
  issuer: OidcIssuerNameSchema.optional(),
  /** As in OidcStartRequestSchema. */
  invite: z.string().min(1).max(200).optional(),
})
export const OidcDeviceResponseSchema = z.object({
  flowId: z.string(),
  issuer: OidcIssuerNameSchema,
  /** Where to enter the code (RFC 8628 §3.2). */
  verificationUri: z.string(),
  /** The same with the code filled in, when the provider gives one. */
  verificationUriComplete: z.string().optional(),
  userCode: z.string(),
  /** Seconds to wait between polls. */
  interval: z.number().int().min(1),
  expiresAt: TimestampSchema,
})
export const OidcPollRequestSchema = z.object({flowId: FlowIdSchema})
export const OidcPollResponseSchema = z.discriminatedUnion('status', [
  /** Not yet: poll again after `interval` seconds (raised when the provider said slow_down). */
  z.object({status: z.literal('pending'), interval: z.number().int().min(1)}),
  LoginResponseSchema.extend({status: z.literal('done')}),
])
export type OidcPollResponse = z.infer<typeof OidcPollResponseSchema>
// Node key expiry and rotation (issue 10)

/** How long before a node's key expires the controller announces it and `mesh status` warns. */
export const KEY_EXPIRY_WARNING_MS = 14 * 86_400_000

/** `mesh node extend`: a new key expiry `by` seconds from now, or never; neither: the tenant's default. */
export const ExtendNodeRequestSchema = z
  .object({by: ExpiresInSchema.optional(), never: z.literal(true).optional()})
  .refine((r) => !(r.by !== undefined && r.never === true), {
    message: 'give by or never, not both',
    path: ['never'],
  })
/** `mesh rotate-key`: the node's new WireGuard public key (made on the node; its credential authenticates). */
export const RotateKeyRequestSchema = z.object({publicKey: PublicKeySchema})
/** The tenant's default node key lifetime in days; 0: keys never expire. */
export const KeyExpirySettingSchema = z.object({days: z.number().int().min(0).max(3650)})
export type KeyExpirySetting = z.infer<typeof KeyExpirySettingSchema>

// ---------------------------------------------------------------------------------------------
// The route table

const NetworkParams = z.object({network: z.string().min(1).max(100).describe('network id or name')})
const IdParams = z.object({id: IdSchema})

export type RouteAuth = 'none' | 'user' | 'superuser' | 'node'

export interface RouteDef {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'
  /** fastify-style path with :params */
  readonly path: string
  readonly summary: string
  readonly auth: RouteAuth
  /** For auth 'user': the permission checked (on the tenant, or on the network named in the path). */
  readonly permission?: Permission
  readonly params?: z.ZodObject
  readonly query?: z.ZodObject
  readonly body?: z.ZodType
  readonly response: z.ZodType
  readonly status: number
}

const route = <const R extends RouteDef>(r: R): R => r

export const ROUTES = {
  login: route({
    method: 'POST',
    path: '/api/v1/login',
    summary: 'Log in; returns a bearer token',
    auth: 'none',
    body: LoginRequestSchema,
    response: LoginResponseSchema,
    status: 200,
  }),
  logout: route({
    method: 'POST',
    path: '/api/v1/logout',
    summary: 'Revoke the token used for this request',
    auth: 'user',
    response: OkSchema,
    status: 200,
  }),
  whoami: route({
    method: 'GET',
    path: '/api/v1/whoami',
    summary: 'The user and tenant of the token',
    auth: 'user',
    response: WhoamiResponseSchema,
    status: 200,
  }),

  'tenant.create': route({
    method: 'POST',
    path: '/api/v1/tenants',
    summary: 'Create a tenant with its owner (superusers only)',
    auth: 'superuser',
    body: CreateTenantRequestSchema,
    response: CreateTenantResponseSchema,
    status: 201,
  }),
  'user.list': route({
    method: 'GET',
    path: '/api/v1/users',
    summary: 'List users of the tenant',
    auth: 'user',
    permission: 'tenant.manage',
    query: PageQuerySchema,
    response: page(UserSchema),
    status: 200,
  }),
  'user.create': route({
    method: 'POST',
    path: '/api/v1/users',
    summary: 'Create a user in the tenant',
    auth: 'user',
    permission: 'tenant.manage',
    body: CreateUserRequestSchema,
    response: UserSchema,
    status: 201,
  }),
  'user.update': route({
    method: 'PATCH',
    path: '/api/v1/users/:id',
    summary: "Change a user's tenant role or name (renaming is refused while the policy names the user)",
    auth: 'user',
    permission: 'tenant.manage',
    params: IdParams,
    body: UpdateUserRequestSchema,
    response: UserSchema,
    status: 200,
  }),
  'user.delete': route({
    method: 'DELETE',
    path: '/api/v1/users/:id',
    summary: 'Delete a user; a user who owns nodes needs ?nodes=remove or ?nodes=reassign&to=ID',
    auth: 'user',
    permission: 'tenant.manage',
    params: IdParams,
    query: DeleteUserQuerySchema,
    response: DeleteUserResponseSchema,
    status: 200,
  }),

  'network.list': route({
    method: 'GET',
    path: '/api/v1/networks',
    summary: 'List networks the user can see',
    auth: 'user',
    permission: 'network.view',
    query: PageQuerySchema,
    response: page(NetworkSchema),
    status: 200,
  }),
  'network.create': route({
    method: 'POST',
    path: '/api/v1/networks',
    summary: 'Create a network',
    auth: 'user',
    permission: 'network.create',
    body: CreateNetworkRequestSchema,
    response: NetworkSchema,
    status: 201,
  }),
  'network.show': route({
    method: 'GET',
    path: '/api/v1/networks/:network',
    summary: 'Show a network',
    auth: 'user',
    permission: 'network.view',
    params: NetworkParams,
    response: NetworkSchema,
    status: 200,
  }),
  'network.update': route({
    method: 'PATCH',
    path: '/api/v1/networks/:network',
    summary: 'Change a network',
    auth: 'user',
    permission: 'network.configure',
    params: NetworkParams,
    body: UpdateNetworkRequestSchema,
    response: NetworkSchema,
    status: 200,
  }),
  'network.delete': route({
    method: 'DELETE',
    path: '/api/v1/networks/:network',
    summary: 'Delete a network and its nodes',
    auth: 'user',
    permission: 'network.delete',
    params: NetworkParams,
    response: OkSchema,
    status: 200,
  }),
  'member.list': route({
    method: 'GET',
    path: '/api/v1/networks/:network/members',
    summary: 'List users with a role on the network',
    auth: 'user',
    permission: 'network.view',
    params: NetworkParams,
    response: z.object({items: z.array(NetworkMemberSchema)}),
    status: 200,
  }),
  'member.set': route({
    method: 'PUT',
    path: '/api/v1/networks/:network/members/:id',
    summary: "Set a user's role on the network",
    auth: 'user',
    permission: 'network.configure',
    params: NetworkParams.extend({id: IdSchema}),
    body: SetMemberRequestSchema,
    response: NetworkMemberSchema,
    status: 200,
  }),
  'member.remove': route({
    method: 'DELETE',
    path: '/api/v1/networks/:network/members/:id',
    summary: "Remove a user's network role",
    auth: 'user',
    permission: 'network.configure',
    params: NetworkParams.extend({id: IdSchema}),
    response: OkSchema,
    status: 200,
  }),

  'invite.list': route({
    method: 'GET',
    path: '/api/v1/networks/:network/invites',
    summary: 'List invites of a network (codes are never shown again)',
    auth: 'user',
    permission: 'network.invite',
    params: NetworkParams,
    query: PageQuerySchema,
    response: page(InviteSchema),
    status: 200,
  }),
  'invite.create': route({
    method: 'POST',
    path: '/api/v1/networks/:network/invites',
    summary: 'Create an invite',
    auth: 'user',
    permission: 'network.invite',
    params: NetworkParams,
    body: CreateInviteRequestSchema,
    response: CreateInviteResponseSchema,
    status: 201,
  }),
  'invite.revoke': route({
    method: 'DELETE',
    path: '/api/v1/invites/:id',
    summary: 'Revoke an invite',
    auth: 'user',
    permission: 'network.invite',
    params: IdParams,
    response: InviteSchema,
    status: 200,
  }),

  'authkey.list': route({
    method: 'GET',
    path: '/api/v1/networks/:network/authkeys',
    summary: 'List auth keys of a network',
    auth: 'user',
    permission: 'node.register',
    params: NetworkParams,
    query: PageQuerySchema,
    response: page(AuthKeySchema),
    status: 200,
  }),
  'authkey.create': route({
    method: 'POST',
    path: '/api/v1/networks/:network/authkeys',
    summary: 'Create an auth key',
    auth: 'user',
    permission: 'node.register',
    params: NetworkParams,
    body: CreateAuthKeyRequestSchema,
    response: CreateAuthKeyResponseSchema,
    status: 201,
  }),
  'authkey.revoke': route({
    method: 'DELETE',
    path: '/api/v1/authkeys/:id',
    summary: 'Revoke an auth key',
    auth: 'user',
    permission: 'node.register',
    params: IdParams,
    response: AuthKeySchema,
    status: 200,
  }),

  'relaykey.list': route({
    method: 'GET',
    path: '/api/v1/relay-keys',
    summary: 'List relay keys (superusers only; keys are never shown again)',
    auth: 'superuser',
    query: PageQuerySchema,
    response: page(RelayKeySchema),
    status: 200,
  }),
  'relaykey.create': route({
    method: 'POST',
    path: '/api/v1/relay-keys',
    summary: 'Create a relay key for stand-alone relays of a region (superusers only)',
    auth: 'superuser',
    body: CreateRelayKeyRequestSchema,
    response: CreateRelayKeyResponseSchema,
    status: 201,
  }),
  'relaykey.revoke': route({
    method: 'DELETE',
    path: '/api/v1/relay-keys/:id',
    summary: 'Revoke a relay key; its relays leave the relay list (superusers only)',
    auth: 'superuser',
    params: IdParams,
    response: RelayKeySchema,
    status: 200,
  }),

  'node.list': route({
    method: 'GET',
    path: '/api/v1/networks/:network/nodes',
    summary: 'List nodes of a network',
    auth: 'user',
    permission: 'network.view',
    params: NetworkParams,
    query: NodeListQuerySchema,
    response: page(NodeSchema),
    status: 200,
  }),
  'connection.list': route({
    method: 'GET',
    path: '/api/v1/networks/:network/connections',
    summary: 'Current paths (direct or relay) and latency between the nodes of a network',
    auth: 'user',
    permission: 'network.view',
    params: NetworkParams,
    query: ConnectionListQuerySchema,
    response: page(ConnectionSchema),
    status: 200,
  }),
  'connection.log': route({
    method: 'GET',
    path: '/api/v1/networks/:network/connections/log',
    summary: 'Recent connection changes in a network, newest first',
    auth: 'user',
    permission: 'network.view',
    params: NetworkParams,
    query: ConnectionLogQuerySchema,
    response: page(ConnectionLogEntrySchema),
    status: 200,
  }),
  'node.show': route({
    method: 'GET',
    path: '/api/v1/nodes/:id',
    summary: 'Show a node',
    auth: 'user',
    permission: 'network.view',
    params: IdParams,
    response: NodeSchema,
    status: 200,
  }),
  'node.approve': route({
    method: 'POST',
    path: '/api/v1/nodes/:id/approve',
    summary: 'Approve a pending node',
    auth: 'user',
    permission: 'node.approve',
    params: IdParams,
    response: NodeSchema,
    status: 200,
  }),
  'node.update': route({
    method: 'PATCH',
    path: '/api/v1/nodes/:id',
    summary: 'Rename a node',
    auth: 'user',
    permission: 'node.approve',
    params: IdParams,
    body: UpdateNodeRequestSchema,
    response: NodeSchema,
    status: 200,
  }),
  'node.remove': route({
    method: 'DELETE',
    path: '/api/v1/nodes/:id',
    summary: 'Remove a node from its network',
    auth: 'user',
    permission: 'node.remove',
    params: IdParams,
    response: OkSchema,
    status: 200,
  }),
  'node.leave': route({
    method: 'POST',
    path: '/api/v1/node/leave',
    summary: 'Remove the calling node (node credential in Authorization: Bearer)',
    auth: 'node',
    response: OkSchema,
    status: 200,
  }),

  register: route({
    method: 'POST',
    path: '/api/v1/register',
    summary: 'Register a node with an invite code or auth key and its public key',
    auth: 'none',
    body: RegisterRequestSchema,
    response: RegisterResponseSchema,
    status: 201,
  }),

  audit: route({
    method: 'GET',
    path: '/api/v1/audit',
    summary: 'Read the audit log of the tenant',
    auth: 'user',
    permission: 'audit.view',
    query: AuditQuerySchema,
    response: page(AuditEntrySchema),
    status: 200,
  }),

  'policy.get': route({
    method: 'GET',
    path: '/api/v1/policy',
    summary: "Read the tenant's ACL policy",
    auth: 'user',
    permission: 'policy.manage',
    response: PolicyInfoSchema,
    status: 200,
  }),

  'policy.set': route({
    method: 'PUT',
    path: '/api/v1/policy',
    summary: "Replace the tenant's ACL policy (validated and its tests run first; audited with a diff)",
    auth: 'user',
    permission: 'policy.manage',
    body: PolicySetRequestSchema,
    response: PolicyInfoSchema,
    status: 200,
  }),

  'policy.delete': route({
    method: 'DELETE',
    path: '/api/v1/policy',
    summary: "Remove the tenant's ACL policy: every node of a network may reach every other again",
    auth: 'user',
    permission: 'policy.manage',
    response: OkSchema,
    status: 200,
  }),

  'policy.check': route({
    method: 'POST',
    path: '/api/v1/policy/check',
    summary: 'Validate a policy and run its tests without storing it',
    auth: 'user',
    permission: 'policy.manage',
    body: PolicyCheckRequestSchema,
    response: PolicyCheckResponseSchema,
    status: 200,
  }),

  'audit.verify': route({
    method: 'GET',
    path: '/api/v1/audit/verify',
    summary: "Recompute the tenant's audit hash chain and name the first entry that does not match",
    auth: 'user',
    permission: 'audit.view',
    response: AuditVerificationSchema,
    status: 200,
  }),

  'token.refresh': route({
    method: 'POST',
    path: '/api/v1/token/refresh',
    summary: 'Exchange a refresh token for a new access and refresh token (the old one is retired)',
    auth: 'none',
    body: RefreshRequestSchema,
    response: TokenPairSchema,
    status: 200,
  }),
  'session.list': route({
    method: 'GET',
    path: '/api/v1/sessions',
    summary: "List the caller's sessions (with ?user=, a user's of the tenant: tenant.manage)",
    auth: 'user',
    query: SessionListQuerySchema,
    response: SessionListSchema,
    status: 200,
  }),
  'session.revoke': route({
    method: 'DELETE',
    path: '/api/v1/sessions/:id',
    summary: "Revoke a session: its access and refresh tokens (the caller's own; tenant.manage: any user's)",
    auth: 'user',
    params: IdParams,
    response: OkSchema,
    status: 200,
  }),
  'mfa.enable': route({
    method: 'POST',
    path: '/api/v1/user/mfa',
    summary: 'Start TOTP MFA for the caller: a new secret, off until confirmed with a code',
    auth: 'user',
    response: MfaEnableResponseSchema,
    status: 200,
  }),
  'mfa.confirm': route({
    method: 'POST',
    path: '/api/v1/user/mfa/confirm',
    summary: 'Turn TOTP MFA on with a first code; returns the recovery codes, once',
    auth: 'user',
    body: MfaCodeRequestSchema,
    response: MfaConfirmResponseSchema,
    status: 200,
  }),
  'mfa.disable': route({
    method: 'POST',
    path: '/api/v1/user/mfa/disable',
    summary: 'Turn TOTP MFA off with a current code or a recovery code',
    auth: 'user',
    body: MfaCodeRequestSchema,
    response: OkSchema,
    status: 200,
  }),
  'userinvite.list': route({
    method: 'GET',
    path: '/api/v1/user-invites',
    summary: 'List the user invites of the tenant (codes are never shown again)',
    auth: 'user',
    permission: 'user.invite',
    query: PageQuerySchema,
    response: page(UserInviteSchema),
    status: 200,
  }),
  'userinvite.create': route({
    method: 'POST',
    path: '/api/v1/user-invites',
    summary: "Create a user invite: people make their own account with it (role up to the caller's)",
    auth: 'user',
    permission: 'user.invite',
    body: CreateUserInviteRequestSchema,
    response: CreateUserInviteResponseSchema,
    status: 201,
  }),
  'userinvite.revoke': route({
    method: 'DELETE',
    path: '/api/v1/user-invites/:id',
    summary: 'Revoke a user invite; accounts made with it stay',
    auth: 'user',
    permission: 'user.invite',
    params: IdParams,
    response: UserInviteSchema,
    status: 200,
  }),
  signup: route({
    method: 'POST',
    path: '/api/v1/signup',
    summary: 'Make an account with a user invite and log in (returns tokens as login does)',
    auth: 'none',
    body: SignupRequestSchema,
    response: LoginResponseSchema,
    status: 201,
  }),
  'oidc.issuers': route({
    method: 'GET',
    path: '/api/v1/oidc/issuers',
    summary: 'The OpenID Connect issuers people may log in with',
    auth: 'none',
    response: OidcIssuerListSchema,
    status: 200,
  }),
  'oidc.start': route({
    method: 'POST',
    path: '/api/v1/oidc/start',
    summary: 'Start an OIDC login (authorization code with PKCE): the URL for the browser',
    auth: 'none',
    body: OidcStartRequestSchema,
    response: OidcStartResponseSchema,
    status: 200,
  }),
  'oidc.finish': route({
    method: 'POST',
    path: '/api/v1/oidc/finish',
    summary: "Finish an OIDC login with the browser's callback URL; returns tokens as login does",
    auth: 'none',
    body: OidcFinishRequestSchema,
    response: LoginResponseSchema,
    status: 200,
  }),
  'oidc.device': route({
    method: 'POST',
    path: '/api/v1/oidc/device',
    summary: 'Start an OIDC device-authorization login (RFC 8628): a URL and a code for the person',
    auth: 'none',
    body: OidcDeviceRequestSchema,
    response: OidcDeviceResponseSchema,
    status: 200,
  }),
  'oidc.device.poll': route({
    method: 'POST',
    path: '/api/v1/oidc/device/poll',
    summary: 'Poll a device-authorization login: pending, or the tokens as login returns them',
    auth: 'none',
    body: OidcPollRequestSchema,
    response: OidcPollResponseSchema,
    status: 200,
  }),
  'node.expire': route({
    method: 'POST',
    path: '/api/v1/nodes/:id/expire',
    summary: "Expire a node's key now: peers drop it and its sessions close until it is extended (audited)",
    auth: 'user',
    permission: 'node.remove',
    params: IdParams,
    response: NodeSchema,
    status: 200,
  }),
  'node.extend': route({
    method: 'POST',
    path: '/api/v1/nodes/:id/extend',
    summary:
      "Give a node's key a new expiry (by seconds from now, never, or the tenant's default); an expired node comes back",
    auth: 'user',
    permission: 'node.remove',
    params: IdParams,
    body: ExtendNodeRequestSchema,
    response: NodeSchema,
    status: 200,
  }),
  'node.rotateKey': route({
    method: 'POST',
    path: '/api/v1/node/rotate-key',
    summary:
      "Replace the calling node's WireGuard public key (node credential in Authorization: Bearer); the old key stops working at once",
    auth: 'node',
    body: RotateKeyRequestSchema,
    response: NodeSchema,
    status: 200,
  }),
  'tenant.keyExpiry': route({
    method: 'GET',
    path: '/api/v1/tenant/key-expiry',
    summary: "The tenant's default node key lifetime in days (0: never)",
    auth: 'user',
    permission: 'tenant.manage',
    response: KeyExpirySettingSchema,
    status: 200,
  }),
  'tenant.setKeyExpiry': route({
    method: 'PUT',
    path: '/api/v1/tenant/key-expiry',
    summary:
      "Set the tenant's default node key lifetime in days (0: never) for keys made from now on (audited)",
    auth: 'user',
    permission: 'tenant.manage',
    body: KeyExpirySettingSchema,
    response: KeyExpirySettingSchema,
    status: 200,
  }),
} as const satisfies Record<string, RouteDef>

export type RouteId = keyof typeof ROUTES
export type RouteBody<R extends RouteId> = (typeof ROUTES)[R] extends {body: infer B extends z.ZodType}
  ? z.input<B>
  : undefined
export type RouteReply<R extends RouteId> = z.infer<(typeof ROUTES)[R]['response']>

/** WebSocket endpoints (not in ROUTES: they upgrade). */
export const WS_PATHS = {
  /** Node credential in `Authorization: Bearer`; `?version=N` resumes. Frames: shared/protocol/netmap.ts */
  netmap: '/api/v1/netmap',
  /** User token in `Authorization: Bearer`; admin events: shared/protocol/netmap.ts AdminEvent */
  events: '/api/v1/events',
  /** Node credential in `Authorization: Bearer`; binary relay frames: shared/relay/frame.ts */
  relay: RELAY_WS_PATH,
} as const

/** Limits every client and server agrees on. */
export const LIMITS = {
  /** Largest accepted request body. */
  maxBodyBytes: 1024 * 1024,
  /** Largest accepted WebSocket frame from a node. */
  maxFrameBytes: 256 * 1024,
} as const
