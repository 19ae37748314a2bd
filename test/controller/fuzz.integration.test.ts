/**
 * Fuzzes every controller route over real HTTP against a real SQLite file: more than 10,000
 * generated and mutated requests (wrong types, missing and extra fields, huge and unicode
 * strings, nested junk, malformed JSON, wrong content types, bodies over 1 MiB, random path
 * params, bad query values, bad tokens). No reply may be a 5xx, every error must have the
 * {"error":{code,message,hint}} shape with a known code, and the database must pass
 * PRAGMA integrity_check afterwards. The netmap and event WebSockets get hostile sessions too
 * (bad credentials and versions, junk, binary and oversize frames): they must end with a
 * documented close code and every server frame must match its schema.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import net from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController} from '../../controller/testing/test-controller.js'
import {systemClock} from '../../shared/clock.js'
import WebSocket from 'ws'
import {z} from 'zod'
import {NAME_RE, ROLES, ROUTES, WS_PATHS, type RouteId} from '../../shared/protocol/control-api.js'
import {
  AdminEventSchema,
  AdminSnapshotSchema,
  CLOSE,
  ServerFrameSchema,
} from '../../shared/protocol/netmap.js'
import {
  Api,
  errorCode,
  http,
  integrityCheck,
  keyPair,
  mapLimit,
  newAgent,
  registerBody,
  uniqueCidr24,
  uniqueName,
  wireErrorProblem,
  type HttpReply,
} from './helpers.js'

const TOTAL = Number(process.env.FUZZ_REQUESTS ?? 10_500)
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31)
const CONCURRENCY = 16
const PASSWORD = 'fuzzing is fun, right?'
const ONE_MIB = 1024 * 1024

interface FuzzCase {
  /** What generated it, for the distribution and failure messages. */
  kind: string
  method: string
  path: string
  authorization?: string
  rawBody?: string | Buffer
  contentType?: string | null
  /** The route it was aimed at, when the method and path still select that route. */
  route?: RouteId
  /** A body over the 1 MiB limit: the server may answer 413 and close the socket early. */
  oversize?: boolean
}

/** Real objects and tokens the generators draw from. */
interface Pools {
  tokens: {owner: string; admin: string; member: string; guest: string; superuser: string; node: string}
  /** Tokens of a user that exists for logout to revoke. */
  throwawayTokens: string[]
  /** Credentials of nodes that exist for node.leave to remove. */
  leaverCredentials: string[]
  usernames: string[]
  networks: string[]
  sacrificialNetworks: string[]
  nodes: string[]
  sacrificialNodes: string[]
  victimUsers: string[]
  invites: string[]
  authKeyIds: string[]
  registrationKey: string
  approvalNodes: string[]
  /** Node credentials no HTTP fuzz case can revoke (their nodes are in no pool). */
  wsCredentials: string[]
  pendingCredential: string
}

// ---------------------------------------------------------------------------------------------
// Generators

const HUGE = {
  s10k: 'x'.repeat(10_000),
  s100k: 'é'.repeat(50_000),
  s500k: 'y'.repeat(500_000),
}
const MALFORMED_JSON = [
  '',
  ' ',
  '{',
  '}',
  '{"a":',
  '{"a":1,}',
  "{'a':1}",
  '{a:1}',
  'NaN',
  'undefined',
  '[1,2',
  '{"a":1}garbage',
  '{"a":1}{"b":2}',
  '\u0000',
  'null',
  'true',
  '0',
  '"just a string"',
  '1e999999',
  '{"name":"\\ud800"}',
  '{"name":"\\u0000"}',
  '{"__proto__":{"superuser":true,"role":"owner"}}',
  '{"constructor":{"prototype":{"superuser":true}}}',
  '\ufeff{"a":1}',
  '['.repeat(5_000) + ']'.repeat(5_000),
  '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000),
  '['.repeat(100_000),
  '{"' + 'k'.repeat(100_000) + '":1}',
  '{"a":1,"a":2,"a":{"b":[]}}',
  '\xff\xfe{\x00"\x00a\x00"\x00}',
]
const CONTENT_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'APPLICATION/JSON',
  'application/jsonp',
  'application/json, text/plain',
  'application/vnd.api+json',
  '*/*',
  '',
  'application/octet-stream',
  'application/json;;;',
]
const SPECIAL_PARAMS = [
  '..',
  '.',
  '%',
  '%00',
  '\u0000',
  ' ',
  "' OR 1=1 --",
  '"; DROP TABLE nodes; --',
  '../../etc/passwd',
  '__proto__',
  'constructor',
  'null',
  'undefined',
  '-1',
  '0',
  '1e400',
  '9'.repeat(400),
  'a'.repeat(5_000),
  '🦄🦄🦄',
  '\ud800',
  'Ωmega',
  'RTL\u202eevil',
  '*',
  '?x=1',
  '#frag',
]
const QUERY_KEYS = ['limit', 'cursor', 'status', 'since', 'actor', 'network', 'x', '__proto__', 'limit[]', '']
const QUERY_VALUES = [
  '1',
  '100',
  '500',
  '0',
  '-1',
  '501',
  'abc',
  '1e999',
  'NaN',
  'Infinity',
  '',
  '1.5',
  ' 5',
  '0x10',
  'a'.repeat(5_000),
  'pending',
  'active',
  'nope',
  '1h',
  '-7d',
  '2026-13-45T99:99:99Z',
  '9999999999999999999999',
  "' OR 1=1",
  '🦄',
]

/** Percent-encodes every byte outside the URL unreserved set (lone surrogates become U+FFFD). */
const pct = (s: string): string =>
  [...Buffer.from(s, 'utf8')]
    .map((b) =>
      /[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, '0')}`,
    )
    .join('')

const printable = (max: number) => fc.stringMatching(new RegExp(`^[!-~]{0,${max}}$`))
const anyJson = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({maxLength: 20}),
  fc.array(fc.integer(), {maxLength: 5}),
  fc.dictionary(fc.string({maxLength: 5}), fc.string({maxLength: 5}), {maxKeys: 3}),
)
const nameArb = fc.stringMatching(NAME_RE)
const tagArb = fc.stringMatching(/^tag:[a-z0-9-]{1,20}$/)

function validBody(id: RouteId, pools: Pools): fc.Arbitrary<Record<string, unknown>> {
  switch (id) {
    case 'login':
      return fc.record({
        username: fc.constantFrom(...pools.usernames, 'nobody'),
        password: fc.constantFrom(PASSWORD, 'wrong-password'),
      })
    case 'tenant.create':
      return fc.record({
        name: nameArb,
        owner: fc.record({username: nameArb, password: fc.constant(PASSWORD)}),
      })
    case 'user.create':
      return fc.record({
        username: nameArb,
        password: fc.string({minLength: 8, maxLength: 30}),
        role: fc.constantFrom(...ROLES),
      })
    case 'user.update':
    case 'member.set':
      return fc.record({role: fc.constantFrom(...ROLES)})
    case 'network.create':
      return fc.record(
        {
          name: nameArb,
          cidr: fc.oneof(
            fc.constant(uniqueCidr24()),
            fc
              .tuple(fc.integer({min: 0, max: 255}), fc.integer({min: 0, max: 32}))
              .map(([a, p]) => `10.${a}.0.0/${p}`),
            fc.constantFrom('0.0.0.0/0', '10.0.0.1/24', '300.1.1.1/24', 'fd00::/64', '10.0.0.0/33', 'abc'),
          ),
          description: fc.string({maxLength: 40}),
          joinPolicy: fc.constantFrom('open', 'invite', 'approval'),
          maxNodes: fc.oneof(fc.constant(null), fc.integer({min: 1, max: 1_000_000})),
        },
        {requiredKeys: ['name', 'cidr']},
      )
    case 'network.update':
      return fc.record(
        {
          name: nameArb,
          description: fc.string({maxLength: 40}),
          joinPolicy: fc.constantFrom('open', 'invite', 'approval'),
          maxNodes: fc.oneof(fc.constant(null), fc.integer({min: 1, max: 1_000_000})),
        },
        {requiredKeys: []},
      )
    case 'invite.create':
      return fc.record(
        {
          expiresIn: fc.integer({min: 60, max: 86_400 * 30}),
          maxUses: fc.oneof(fc.constant(null), fc.integer({min: 1, max: 100})),
          role: fc.constantFrom(...ROLES),
        },
        {requiredKeys: []},
      )
    case 'authkey.create':
      return fc.record(
        {
          reusable: fc.boolean(),
          ephemeral: fc.boolean(),
          preApproved: fc.boolean(),
          tags: fc.array(tagArb, {maxLength: 4}),
          expiresIn: fc.integer({min: 60, max: 86_400 * 30}),
        },
        {requiredKeys: []},
      )
    case 'register':
      return fc.record({
        authKey: fc.constantFrom(pools.registrationKey, 'mkey_bogus', pools.registrationKey + 'x'),
        publicKey: fc.constant(null).map(() => keyPair().publicKey),
        name: nameArb,
        hostname: fc.string({maxLength: 40}),
        os: fc.constantFrom('linux', 'darwin', 'windows', ''),
        endpoints: fc.array(fc.constantFrom('203.0.113.7:51820', '[2001:db8::1]:51820', '198.51.100.1:1'), {
          maxLength: 3,
        }),
      })
    case 'node.update':
      return fc.record({name: nameArb})
    default:
      return fc.constant({})
  }
}

type Mutation =
  | {op: 'delete'; at: number}
  | {op: 'set'; at: number; value: unknown; kind: string}
  | {op: 'extra'; key: string; value: unknown}
  | {op: 'proto'}
  | {op: 'wrap'}
  | {op: 'replace'; value: unknown}

const nested = (depth: number): unknown => {
  let v: unknown = 'bottom'
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : {n: v}
  return v
}

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.nat().map((at) => ({op: 'delete' as const, at})),
  fc.tuple(fc.nat(), anyJson).map(([at, value]) => ({op: 'set' as const, at, value, kind: 'wrong-type'})),
  fc
    .tuple(fc.nat(), fc.constantFrom(HUGE.s10k, HUGE.s100k, HUGE.s500k))
    .map(([at, value]) => ({op: 'set' as const, at, value, kind: 'huge-string'})),
  fc
    .tuple(fc.nat(), fc.string({unit: 'binary', maxLength: 60}))
    .map(([at, value]) => ({op: 'set' as const, at, value, kind: 'unicode'})),
  fc
    .tuple(fc.nat(), fc.integer({min: 5, max: 3_000}))
    .map(([at, depth]) => ({op: 'set' as const, at, value: nested(depth), kind: 'nested-junk'})),
  fc
    .tuple(fc.nat(), fc.constantFrom(-1, 0, -0, 0.5, 2 ** 53, -(2 ** 63), 1e308, Number.MAX_SAFE_INTEGER + 2))
    .map(([at, value]) => ({op: 'set' as const, at, value, kind: 'number-edge'})),
  fc.tuple(fc.string({maxLength: 30}), anyJson).map(([key, value]) => ({op: 'extra' as const, key, value})),
  fc.constant({op: 'proto' as const}),
  fc.constant({op: 'wrap' as const}),
  anyJson.map((value) => ({op: 'replace' as const, value})),
)

/** Applies mutations to a valid body; returns the JSON text and the names of what was done. */
function mutate(body: Record<string, unknown>, mutations: Mutation[]): {text: string; kind: string} {
  let value: unknown = structuredClone(body)
  const kinds: string[] = []
  let proto = false
  for (const m of mutations) {
    const obj =
      value !== null && typeof value === 'object' && !Array.isArray(value)
        ? (value as Record<string, unknown>)
        : undefined
    const keys = obj ? Object.keys(obj) : []
    switch (m.op) {
      case 'delete':
        if (obj && keys.length) delete obj[keys[m.at % keys.length]!]
        kinds.push('missing-field')
        break
      case 'set':
        if (obj) obj[keys.length ? keys[m.at % keys.length]! : 'name'] = m.value
        kinds.push(m.kind)
        break
      case 'extra':
        if (obj) obj[m.key] = m.value
        kinds.push('extra-field')
        break
      case 'proto':
        proto = true
        kinds.push('proto-pollution')
        break
      case 'wrap':
        value = [value]
        kinds.push('wrapped-in-array')
        break
      case 'replace':
        value = m.value
        kinds.push('replaced')
        break
    }
  }
  let text = JSON.stringify(value) ?? 'null'
  // Own "__proto__" keys cannot be made with object syntax; splice them into the text.
  if (proto && text.startsWith('{'))
    text = `{"__proto__":{"superuser":true,"role":"owner"},"constructor":{"prototype":{"x":1}}${text.length > 2 ? ',' : ''}${text.slice(1)}`
  return {text, kind: `mutated:${[...new Set(kinds)].sort().join('+')}`}
}

interface BodyChoice {
  kind: string
  rawBody?: string | Buffer
  contentType?: string | null
  oversize?: boolean
}

function bodyArb(id: RouteId, pools: Pools): fc.Arbitrary<BodyChoice> {
  const r = ROUTES[id]
  const valid = validBody(id, pools)
  const malformed = fc
    .oneof(fc.constantFrom(...MALFORMED_JSON), fc.string({unit: 'binary', maxLength: 200}))
    .map((text): BodyChoice => ({kind: 'malformed-json', rawBody: text}))
  const oversize = fc.constantFrom('string', 'array', 'plain').map((shape): BodyChoice => {
    const n = ONE_MIB + 1024
    const rawBody =
      shape === 'string'
        ? JSON.stringify({name: 'a'.repeat(n)})
        : shape === 'array'
          ? `[${'1,'.repeat(n / 2)}1]`
          : Buffer.alloc(n, 0x41)
    return {kind: `oversize-${shape}`, rawBody, oversize: true}
  })
  const wrongType = fc
    .tuple(valid, fc.constantFrom(...CONTENT_TYPES, null))
    .map(([b, ct]): BodyChoice => ({kind: 'wrong-content-type', rawBody: JSON.stringify(b), contentType: ct}))
  const noBody = fc.constantFrom<BodyChoice>(
    {kind: 'no-body'},
    {kind: 'empty-json-body', rawBody: ''},
    {kind: 'no-body-json-type', contentType: 'application/json'},
  )
  const randomJson = fc
    .jsonValue({maxDepth: 4})
    .map((v): BodyChoice => ({kind: 'random-json', rawBody: JSON.stringify(v) ?? 'null'}))
  if (!('body' in r))
    return fc.oneof(
      {weight: 60, arbitrary: fc.constant<BodyChoice>({kind: 'no-body'})},
      {weight: 10, arbitrary: randomJson},
      {weight: 6, arbitrary: malformed},
      {weight: 6, arbitrary: wrongType},
      {weight: 1, arbitrary: oversize},
    )
  return fc.oneof(
    {weight: 25, arbitrary: valid.map((b): BodyChoice => ({kind: 'valid', rawBody: JSON.stringify(b)}))},
    {
      weight: 40,
      arbitrary: fc
        .tuple(valid, fc.array(mutationArb, {minLength: 1, maxLength: 3}))
        .map(([b, ms]): BodyChoice => {
          const m = mutate(b, ms)
          return {kind: m.kind, rawBody: m.text}
        }),
    },
    {weight: 8, arbitrary: randomJson},
    {weight: 8, arbitrary: malformed},
    {weight: 6, arbitrary: wrongType},
    {weight: 4, arbitrary: noBody},
    {weight: 1, arbitrary: oversize},
  )
}

function paramArb(id: RouteId, name: string, pools: Pools): fc.Arbitrary<string> {
  let real: string[]
  if (name === 'network') real = id === 'network.delete' ? pools.sacrificialNetworks : pools.networks
  else if (id === 'user.update' || id === 'user.delete' || id.startsWith('member.')) real = pools.victimUsers
  else if (id === 'invite.revoke') real = pools.invites
  else if (id === 'authkey.revoke') real = pools.authKeyIds
  else if (id === 'node.remove') real = pools.sacrificialNodes
  else if (id === 'node.approve') real = [...pools.approvalNodes, ...pools.nodes]
  else real = pools.nodes
  return fc.oneof(
    {weight: 50, arbitrary: fc.constantFrom(...real)},
    {
      weight: 10,
      arbitrary: fc.constantFrom(...pools.nodes, ...pools.networks, ...pools.invites, ...pools.victimUsers),
    },
    {weight: 15, arbitrary: fc.constantFrom(...SPECIAL_PARAMS)},
    {weight: 10, arbitrary: fc.string({maxLength: 40})},
    {weight: 5, arbitrary: fc.string({unit: 'binary', maxLength: 20})},
    {weight: 5, arbitrary: fc.uuid()},
    {weight: 5, arbitrary: fc.nat().map(String)},
  )
}

const queryArb: fc.Arbitrary<string> = fc.oneof(
  {weight: 4, arbitrary: fc.constant('')},
  {
    weight: 6,
    arbitrary: fc
      .array(
        fc.tuple(
          fc.oneof(fc.constantFrom(...QUERY_KEYS), fc.string({maxLength: 10})),
          fc.oneof(
            fc.constantFrom(...QUERY_VALUES),
            fc.string({maxLength: 30}),
            fc.string({unit: 'binary', maxLength: 10}),
          ),
        ),
        {minLength: 1, maxLength: 4},
      )
      .map((pairs) => `?${pairs.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&')}`),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '?%zz=%',
      '?limit=%00',
      '?limit[]=1',
      '?limit=1&limit=2',
      '?=',
      '?&&&',
      '?limit',
      '?cursor=%ff%fe',
    ),
  },
)

function authArb(pools: Pools, id: RouteId): fc.Arbitrary<string | undefined> {
  const t = pools.tokens
  // logout revokes the token it is called with, also when spelt "bearer": it only ever sees
  // throwaway tokens, never one the rest of the run needs.
  // node.leave removes the node whose credential it is called with: it only ever sees the
  // credentials of nodes made for it, never t.node.
  const subject =
    id === 'logout'
      ? fc.constantFrom(...pools.throwawayTokens)
      : id === 'node.leave'
        ? fc.constantFrom(...pools.leaverCredentials)
        : fc.constant(t.owner)
  const nodeCredential = id === 'node.leave' ? `mnode_${'x'.repeat(43)}` : t.node
  const good: fc.Arbitrary<string | undefined> =
    id === 'logout' || id === 'node.leave'
      ? subject.map((s) => `Bearer ${s}`)
      : fc.oneof(
          {weight: 30, arbitrary: fc.constant(`Bearer ${t.owner}`)},
          {weight: 6, arbitrary: fc.constant(`Bearer ${t.admin}`)},
          {weight: 6, arbitrary: fc.constant(`Bearer ${t.member}`)},
          {weight: 6, arbitrary: fc.constant(`Bearer ${t.guest}`)},
          {weight: 6, arbitrary: fc.constant(`Bearer ${t.superuser}`)},
        )
  const mangled = fc
    .tuple(subject, fc.nat(6))
    .map(
      ([s, i]) =>
        [
          `bearer ${s}`,
          `Bearer ${s}x`,
          `Bearer ${s.slice(0, -2)}`,
          `Bearer ${s} ${s}`,
          `Bearer  ${s}`,
          `Basic ${Buffer.from(`admin:${s}`).toString('base64')}`,
          s,
        ][i]!,
    )
  return fc.oneof(
    {weight: 50, arbitrary: good},
    {weight: 8, arbitrary: fc.constant(undefined)},
    {weight: 4, arbitrary: mangled},
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        'Bearer',
        'Bearer ',
        'Basic YWRtaW46eA==',
        `Bearer ${nodeCredential}`,
        `Bearer ${'A'.repeat(8_000)}`,
        'Token abc',
        `Bearer ${Buffer.from('{"alg":"none"}').toString('base64url')}.e30.`,
      ),
    },
    {weight: 4, arbitrary: printable(100).map((s) => `Bearer ${s}`)},
  )
}

function routeCaseArb(id: RouteId, pools: Pools): fc.Arbitrary<FuzzCase> {
  const r = ROUTES[id]
  const names = [...r.path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]!)
  return fc
    .tuple(
      fc.tuple(...names.map((n) => paramArb(id, n, pools))),
      'query' in r
        ? queryArb
        : fc.oneof({weight: 9, arbitrary: fc.constant('')}, {weight: 1, arbitrary: queryArb}),
      bodyArb(id, pools),
      authArb(pools, id),
    )
    .map(([values, query, body, authorization]): FuzzCase => {
      let i = 0
      const path = r.path.replace(/:([A-Za-z]+)/g, () => pct(values[i++]!))
      // Dot segments and empty params make the URL select another route.
      const exact = values.every((v) => v !== '' && v !== '.' && v !== '..' && !v.includes('\ud800'))
      return {
        kind: body.kind,
        method: r.method,
        path: path + query,
        authorization,
        rawBody: body.rawBody,
        contentType:
          body.contentType === undefined
            ? body.rawBody === undefined
              ? undefined
              : 'application/json'
            : body.contentType,
        route: exact ? id : undefined,
        oversize: body.oversize,
      }
    })
}

function strayCaseArb(pools: Pools): fc.Arbitrary<FuzzCase> {
  // Not logout: any method there could revoke the owner token that the rest of the run needs.
  const paths = Object.values(ROUTES)
    .filter((r) => r.path !== ROUTES.logout.path)
    .map((r) => r.path.replace(/:[A-Za-z]+/g, pools.networks[0]!))
  return fc.oneof(
    // A known path with a method it does not have.
    fc
      .tuple(fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE'), fc.constantFrom(...paths))
      .map(([method, path]): FuzzCase => ({
        kind: 'stray-method',
        method,
        path,
        authorization: `Bearer ${pools.tokens.owner}`,
      })),
    // Paths nobody serves.
    fc
      .tuple(
        fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE'),
        fc.array(
          fc.oneof(
            fc.constantFrom('api', 'v1', 'v2', 'networks', 'nodes', 'admin', '.env', 'x'),
            fc.string({maxLength: 12}),
          ),
          {
            minLength: 0,
            maxLength: 6,
          },
        ),
      )
      .map(([method, segs]): FuzzCase => ({
        kind: 'stray-path',
        method,
        path: `/${segs.map(pct).join('/')}`,
        authorization: `Bearer ${pools.tokens.owner}`,
      })),
    fc
      .constantFrom(
        '/api/v1/',
        '/api/v1//networks',
        '/api/v1/networks/',
        '/API/V1/NETWORKS',
        '/api/v1/networks;x',
        `/api/v1/${'a'.repeat(8_000)}`,
      )
      .map((path): FuzzCase => ({
        kind: 'stray-path',
        method: 'GET',
        path,
        authorization: `Bearer ${pools.tokens.owner}`,
      })),
  )
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP that no client library would send

const WS_KEY = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
const RAW_REQUESTS: [string, string][] = [
  ['garbage request line', 'GARBAGE\r\n\r\n'],
  ['unknown method', 'FOO /api/v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['header without colon', 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'],
  ['NUL in a header', 'GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\u0000b\r\n\r\n'],
  [
    'Content-Length with Transfer-Encoding',
    'POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  ],
  [
    'two Content-Lengths',
    'POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
  ],
  ['headers over 16 KiB', `GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`],
  [
    'absolute-form target',
    'GET http://203.0.113.9/api/v1/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  ],
  ['raw non-ASCII path', 'GET /api/v1/nodes/\u00ff\u00fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
  ['HTTP/1.0 without Host', 'GET /api/v1/whoami HTTP/1.0\r\n\r\n'],
  [
    'pipelined requests',
    'GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  ],
  [
    'upgrade with a bad WebSocket version',
    `GET /api/v1/netmap HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 99\r\n${WS_KEY}\r\n`,
  ],
  [
    'upgrade without a key',
    'GET /api/v1/events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n',
  ],
  [
    'upgrade on a REST path',
    `GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n${WS_KEY}\r\n`,
  ],
]

/** Writes bytes to a fresh connection and parses every HTTP response that comes back before it closes. */
function rawExchange(port: number, data: string): Promise<{status?: number; replies: HttpReply[]}> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const socket = net.connect(port, '127.0.0.1', () => socket.write(Buffer.from(data, 'latin1')))
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      const replies = parseResponses(Buffer.concat(chunks).toString('latin1'))
      resolve({status: replies[0]?.status, replies})
    }
    // Keep-alive connections stay open: two seconds of silence ends the exchange.
    const timer = setTimeout(done, 2_000)
    socket.on('data', (d) => chunks.push(d))
    socket.on('close', done)
    socket.on('error', done)
  })
}

function parseResponses(text: string): HttpReply[] {
  const replies: HttpReply[] = []
  let rest = text
  for (let i = 0; i < 10 && rest.startsWith('HTTP/'); i++) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) break
    const [statusLine, ...headerLines] = rest.slice(0, end).split('\r\n')
    const headers: Record<string, string> = {}
    for (const l of headerLines)
      headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim()
    const length = Number(headers['content-length'] ?? 0)
    const body = rest.slice(end + 4, end + 4 + length)
    rest = rest.slice(end + 4 + length)
    let json: unknown
    try {
      json = JSON.parse(Buffer.from(body, 'latin1').toString('utf8'))
    } catch {
      json = undefined
    }
    replies.push({status: Number(statusLine!.split(' ')[1]), headers, text: body, json})
  }
  return replies
}

// ---------------------------------------------------------------------------------------------
// WebSocket sessions

const WS_SESSIONS = Number(process.env.FUZZ_WS_SESSIONS ?? 600)
/** Close codes a hostile session may end with: ours (normal), no status, too big, or the netmap's own. */
const WS_CLOSE_OK = new Set([
  1000,
  1005,
  1009,
  CLOSE.BAD_FRAME,
  CLOSE.UNAUTHENTICATED,
  CLOSE.REVOKED,
  CLOSE.REPLACED,
])

interface WsCase {
  kind: string
  path: string
  authorization?: string
  frames: (string | Buffer)[]
  oversize?: boolean
}

const endpointArb = fc.oneof(
  fc
    .tuple(fc.integer({min: 0, max: 255}), fc.integer({min: 1, max: 65535}))
    .map(([a, p]) => `203.0.113.${a}:${p}`),
  fc.constantFrom('[2001:db8::1]:51820', '198.51.100.9:51820'),
)
const reportArb = fc.record(
  {
    type: fc.constant('report'),
    endpoints: fc.array(endpointArb, {maxLength: 16}),
    peers: fc.array(
      fc.record({
        publicKey: fc.constant(null).map(() => keyPair().publicKey),
        lastHandshake: fc.oneof(
          fc.constant(null),
          fc.date({noInvalidDate: true}).map((d) => d.toISOString()),
        ),
        rxBytes: fc.nat(),
        txBytes: fc.nat(),
        endpoint: fc.oneof(fc.constant(null), endpointArb),
      }),
      {maxLength: 4},
    ),
  },
  {requiredKeys: ['type']},
)

function wsCaseArb(pools: Pools): fc.Arbitrary<WsCase> {
  const frame: fc.Arbitrary<{frame: string | Buffer; kind: string; oversize?: boolean}> = fc.oneof(
    {weight: 30, arbitrary: reportArb.map((r) => ({frame: JSON.stringify(r), kind: 'report'}))},
    {
      weight: 30,
      arbitrary: fc
        .tuple(reportArb, fc.array(mutationArb, {minLength: 1, maxLength: 3}))
        .map(([r, ms]) => ({frame: mutate(r, ms).text, kind: 'mutated'})),
    },
    {
      weight: 10,
      arbitrary: fc
        .jsonValue({maxDepth: 3})
        .map((v) => ({frame: JSON.stringify(v) ?? 'null', kind: 'random-json'})),
    },
    {weight: 10, arbitrary: fc.constantFrom(...MALFORMED_JSON).map((t) => ({frame: t, kind: 'malformed'}))},
    {
      weight: 5,
      arbitrary: fc.uint8Array({maxLength: 200}).map((b) => ({frame: Buffer.from(b), kind: 'binary'})),
    },
    {
      weight: 2,
      arbitrary: fc.constant({
        frame: JSON.stringify({type: 'report', endpoints: Array(17).fill('203.0.113.1:1')}),
        kind: 'too-many-endpoints',
      }),
    },
    {weight: 2, arbitrary: fc.constant({frame: 'x'.repeat(300 * 1024), kind: 'oversize', oversize: true})},
  )
  const version = fc.oneof(
    {weight: 6, arbitrary: fc.constant('')},
    {
      weight: 4,
      arbitrary: fc
        .constantFrom('0', '1', '3', '-1', 'abc', '1e99', '99999999999999999999', '', '%00', 'a'.repeat(1000))
        .map((v) => `?version=${v}`),
    },
  )
  const netmapAuth = fc.oneof(
    {weight: 60, arbitrary: fc.constantFrom(...pools.wsCredentials).map((c) => `Bearer ${c}`)},
    {weight: 5, arbitrary: fc.constant(`Bearer ${pools.pendingCredential}`)},
    {weight: 10, arbitrary: fc.constant(`Bearer ${pools.tokens.owner}`)},
    {weight: 25, arbitrary: authArb(pools, 'whoami')},
  )
  const eventsAuth = fc.oneof(
    {weight: 50, arbitrary: fc.constant(`Bearer ${pools.tokens.owner}`)},
    {weight: 10, arbitrary: fc.constant(`Bearer ${pools.tokens.guest}`)},
    {weight: 10, arbitrary: fc.constant(`Bearer ${pools.wsCredentials[0]}`)},
    {weight: 30, arbitrary: authArb(pools, 'whoami')},
  )
  const session = (path: string, auth: fc.Arbitrary<string | undefined>) =>
    fc.tuple(version, auth, fc.array(frame, {maxLength: 4})).map(([q, authorization, frames]): WsCase => ({
      kind: frames.length ? [...new Set(frames.map((f) => f.kind))].sort().join('+') : 'no-frames',
      path: path + q,
      authorization,
      frames: frames.map((f) => f.frame),
      oversize: frames.some((f) => f.oversize),
    }))
  return fc.oneof(
    {weight: 7, arbitrary: session(WS_PATHS.netmap, netmapAuth)},
    {weight: 3, arbitrary: session(WS_PATHS.events, eventsAuth)},
  )
}

interface WsOutcome {
  label: string
  problems: string[]
  firstFrameType?: string
}

/** Runs one session: connect, send the frames, give the server 300 ms to react, close. */
function runWsCase(baseUrl: string, c: WsCase): Promise<WsOutcome> {
  const problems: string[] = []
  const isNetmap = c.path.startsWith(WS_PATHS.netmap)
  let firstFrameType: string | undefined
  return new Promise<WsOutcome>((resolve) => {
    const ws = new WebSocket(baseUrl.replace(/^http/, 'ws') + c.path, {
      headers: c.authorization === undefined ? {} : {authorization: c.authorization},
      perMessageDeflate: false,
      handshakeTimeout: 5_000,
    })
    let settled = false
    const finish = (label: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({label, problems, firstFrameType})
    }
    const timer = setTimeout(() => {
      problems.push('session did not end within 10 s')
      ws.terminate()
      finish('timeout')
    }, 10_000)
    ws.on('unexpected-response', (_req, res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString()))
      res.on('end', () => {
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        const reply = {status: res.statusCode ?? 0, headers: {}, text, json}
        if (reply.status >= 500) problems.push(`upgrade answered ${reply.status}`)
        const problem = wireErrorProblem(reply)
        if (problem) problems.push(`upgrade refusal: ${problem}`)
        finish(`http ${reply.status}`)
      })
    })
    ws.on('message', (data: Buffer) => {
      let msg: unknown
      try {
        msg = JSON.parse(data.toString())
      } catch {
        problems.push('server sent a frame that is not JSON')
        return
      }
      const schema = isNetmap ? ServerFrameSchema : z.union([AdminSnapshotSchema, AdminEventSchema])
      const parsed = schema.safeParse(msg)
      if (!parsed.success)
        problems.push(`server frame does not match its schema: ${parsed.error.message.slice(0, 200)}`)
      firstFrameType ??= (msg as {type?: string}).type
    })
    ws.on('open', async () => {
      for (const f of c.frames) {
        if (ws.readyState !== WebSocket.OPEN) break
        ws.send(f, {binary: Buffer.isBuffer(f)})
      }
      await new Promise((r) => setTimeout(r, 300))
      if (ws.readyState === WebSocket.OPEN) ws.close(1000)
    })
    ws.on('close', (code) => {
      if (!WS_CLOSE_OK.has(code) && !(code === 1006 && c.oversize)) problems.push(`closed with ${code}`)
      finish(`close ${code}`)
    })
    ws.on('error', (err) => {
      // Errors are followed by 'close' (or were an HTTP refusal, handled above); note only the odd ones.
      if (!/Unexpected server response|ECONNRESET|socket hang up|Invalid WebSocket frame/.test(err.message))
        problems.push(`client error ${err.message}`)
    })
  })
}

// ---------------------------------------------------------------------------------------------

describe('controller fuzzing', () => {
  let ctl: Awaited<ReturnType<typeof startTestController>>
  let closed = false
  const close = async () => {
    if (!closed) await ctl?.close()
    closed = true
  }
  const agent = newAgent(CONCURRENCY)
  let pools: Pools

  // Our own data dir: the test controller deletes only dirs it made, and the file must outlive close().
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mesh-fuzz-'))
  /** The controller's clock runs this far ahead of real time (with real timers): see the 429 retry. */
  let skewMs = 0

  beforeAll(async () => {
    ctl = await startTestController({dataDir, clock: {...systemClock, now: () => Date.now() + skewMs}})
    const api = new Api(ctl.url, agent)
    const ownerName = uniqueName('owner')
    const superuser = ctl.adminToken
    await api.ok('tenant.create', {
      token: superuser,
      body: {name: uniqueName('t'), owner: {username: ownerName, password: PASSWORD}},
    })
    const login = async (username: string) =>
      (await api.ok<{token: string}>('login', {body: {username, password: PASSWORD}})).token
    const owner = await login(ownerName)
    const usernames = [ownerName]
    const roleTokens: Record<string, string> = {}
    for (const role of ['admin', 'moderator', 'member', 'guest']) {
      const username = uniqueName(role)
      await api.ok('user.create', {token: owner, body: {username, password: PASSWORD, role}})
      usernames.push(username)
      roleTokens[role] = await login(username)
    }
    const throwawayTokens = []
    for (let i = 0; i < 20; i++) throwawayTokens.push(await login(usernames[3]!))
    const net = await api.ok<{id: string; name: string}>('network.create', {
      token: owner,
      body: {name: uniqueName('net'), cidr: '10.200.0.0/16', joinPolicy: 'open'},
    })
    const apnet = await api.ok<{id: string; name: string}>('network.create', {
      token: owner,
      body: {name: uniqueName('ap'), cidr: uniqueCidr24(), joinPolicy: 'approval'},
    })
    const {key: registrationKey} = await api.ok<{key: string}>('authkey.create', {
      token: owner,
      params: {network: net.id},
      body: {reusable: true, preApproved: true},
    })
    const {key: approvalKey} = await api.ok<{key: string}>('authkey.create', {
      token: owner,
      params: {network: apnet.id},
      body: {reusable: true},
    })
    const register = async (authKey: string) =>
      api.ok<{node: {id: string}; credential: string}>('register', {body: registerBody({authKey})})
    const nodes = [await register(registrationKey), await register(registrationKey)]
    const sacrificialNodes = await mapLimit(Array.from({length: 20}), 4, () => register(registrationKey))
    const approvalNodes = await mapLimit(Array.from({length: 10}), 4, () => register(approvalKey))
    const wsNodes = await mapLimit(Array.from({length: 6}), 4, () => register(registrationKey))
    const leavers = await mapLimit(Array.from({length: 20}), 4, () => register(registrationKey))
    const pendingNode = await register(approvalKey)
    const sacrificialNetworks = await mapLimit(Array.from({length: 20}), 4, () =>
      api.ok<{id: string}>('network.create', {
        token: owner,
        body: {name: uniqueName('sac'), cidr: uniqueCidr24()},
      }),
    )
    const victimUsers = await mapLimit(Array.from({length: 10}), 4, () =>
      api.ok<{id: string}>('user.create', {
        token: owner,
        body: {username: uniqueName('victim'), password: PASSWORD, role: 'member'},
      }),
    )
    const invites = await mapLimit(Array.from({length: 10}), 4, () =>
      api.ok<{invite: {id: string}}>('invite.create', {token: owner, params: {network: net.id}, body: {}}),
    )
    const authKeys = await mapLimit(Array.from({length: 10}), 4, () =>
      api.ok<{authKey: {id: string}}>('authkey.create', {token: owner, params: {network: net.id}, body: {}}),
    )
    pools = {
      tokens: {
        owner,
        admin: roleTokens.admin!,
        member: roleTokens.member!,
        guest: roleTokens.guest!,
        superuser,
        node: nodes[0]!.credential,
      },
      throwawayTokens,
      leaverCredentials: leavers.map((n) => n.credential),
      usernames,
      networks: [net.id, net.name, apnet.id, apnet.name],
      sacrificialNetworks: sacrificialNetworks.map((n) => n.id),
      nodes: nodes.map((n) => n.node.id),
      sacrificialNodes: sacrificialNodes.map((n) => n.node.id),
      victimUsers: victimUsers.map((u) => u.id),
      invites: invites.map((i) => i.invite.id),
      authKeyIds: authKeys.map((k) => k.authKey.id),
      registrationKey,
      approvalNodes: approvalNodes.map((n) => n.node.id),
      wsCredentials: wsNodes.map((n) => n.credential),
      pendingCredential: pendingNode.credential,
    }
  })

  afterAll(async () => {
    await close()
    await agent.close()
    rmSync(dataDir, {recursive: true, force: true})
  })

  it('survives hostile WebSocket sessions on the netmap and event streams, closing them with documented codes', async () => {
    const cases = fc.sample(wsCaseArb(pools), {numRuns: WS_SESSIONS, seed: SEED})
    const byOutcome = new Map<string, number>()
    const failures: string[] = []
    const started = Date.now()
    await mapLimit(cases, CONCURRENCY, async (c, i) => {
      const outcome = await runWsCase(ctl.url, c)
      byOutcome.set(outcome.label, (byOutcome.get(outcome.label) ?? 0) + 1)
      for (const problem of outcome.problems)
        failures.push(`#${i} ${c.kind} ${c.path.slice(0, 80)}: ${problem}`)
    })
    // A well-behaved node still gets its full map afterwards. The fuzzing may have used up this
    // credential's new-session budget (429, one more per second): move the controller's clock a
    // second on and retry, as meshd's backoff would after waiting.
    const check: WsCase = {
      kind: 'check',
      path: WS_PATHS.netmap,
      authorization: `Bearer ${pools.wsCredentials[0]}`,
      frames: [],
    }
    let after = await runWsCase(ctl.url, check)
    for (let i = 0; i < 3 && after.label === 'http 429'; i++) {
      skewMs += 1_000
      after = await runWsCase(ctl.url, check)
    }
    console.log(
      `ws fuzz: ${cases.length} sessions in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        `outcomes: ${JSON.stringify(Object.fromEntries([...byOutcome].sort((a, b) => b[1] - a[1])))}`,
    )
    expect(failures.slice(0, 25), `${failures.length} failures (seed ${SEED})`).toEqual([])
    expect(after.firstFrameType).toBe('full')
    expect((await http(ctl.url, 'GET', '/healthz', {dispatcher: agent})).status).toBe(200)
  })

  it('answers malformed HTTP (bad request lines, huge headers, smuggling attempts) with the error shape and keeps serving', async () => {
    const port = Number(new URL(ctl.url).port)
    const failures: string[] = []
    const seen: string[] = []
    for (const [label, data] of RAW_REQUESTS) {
      const res = await rawExchange(port, data)
      seen.push(`${label}: ${res.status ?? 'no reply'}`)
      if (res.status === undefined) continue // the server may just close a connection it cannot parse
      if (res.status >= 500) failures.push(`${label}: ${res.status}`)
      // Every HTTP response the server writes here is an error (or a normal reply to a valid one).
      for (const reply of res.replies)
        if (reply.status >= 400) {
          const problem = wireErrorProblem(reply)
          if (problem) failures.push(`${label}: ${problem}`)
        }
    }
    console.log(`raw HTTP: ${seen.join('; ')}`)
    expect(failures).toEqual([])
    expect((await http(ctl.url, 'GET', '/healthz', {dispatcher: agent})).status).toBe(200)
  })

  it('answers 10,000+ hostile requests without a 5xx, always with a well-formed error, and keeps its database intact', async () => {
    const ids = Object.keys(ROUTES) as RouteId[]
    const arb = fc.oneof(
      {weight: 95, arbitrary: fc.constantFrom(...ids).chain((id) => routeCaseArb(id, pools))},
      {weight: 5, arbitrary: strayCaseArb(pools)},
    )
    const cases = fc.sample(arb, {numRuns: TOTAL, seed: SEED})
    const byStatus = new Map<string, number>()
    const byCode = new Map<string, number>()
    const byRoute = new Map<string, number>()
    const byKind = new Map<string, number>()
    const failures: string[] = []
    const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1)
    const started = Date.now()

    await mapLimit(cases, CONCURRENCY, async (c, i) => {
      bump(byRoute, c.route ?? 'other path')
      bump(byKind, c.kind.replace(/:.*/, ''))
      const where = `#${i} ${c.kind} ${c.method} ${c.path.slice(0, 120)}`
      let reply
      try {
        reply = await http(ctl.url, c.method, c.path, {
          headers: c.authorization === undefined ? {} : {authorization: c.authorization},
          rawBody: c.rawBody,
          contentType: c.contentType,
          dispatcher: agent,
        })
      } catch (err) {
        // A server may answer an oversize body with 413 and close before reading it all.
        bump(byStatus, c.oversize ? 'closed (oversize)' : 'transport-error')
        if (!c.oversize) failures.push(`${where}: transport error ${(err as Error).message}`)
        return
      }
      bump(byStatus, String(reply.status))
      if (reply.status >= 400) bump(byCode, errorCode(reply) ?? `(no code, ${reply.status})`)
      if (reply.status >= 500) failures.push(`${where}: ${reply.status} ${reply.text.slice(0, 300)}`)
      else if (reply.status >= 400) {
        const problem = wireErrorProblem(reply)
        if (problem) failures.push(`${where}: ${problem}`)
      } else if (reply.status < 200 || reply.status >= 300) {
        failures.push(`${where}: unexpected status ${reply.status}`)
      } else if (c.route) {
        const r = ROUTES[c.route]
        if (reply.status !== r.status) failures.push(`${where}: ${reply.status}, route says ${r.status}`)
        const parsed = r.response.safeParse(reply.json)
        if (!parsed.success)
          failures.push(
            `${where}: reply does not match the response schema: ${parsed.error.message.slice(0, 300)}`,
          )
      }
    })

    const seconds = (Date.now() - started) / 1000
    // The run only means something if the callers' tokens stayed valid throughout.
    const tokenStatus: Record<string, number> = {}
    for (const [role, token] of Object.entries(pools.tokens))
      if (role !== 'node')
        tokenStatus[role] = (await http(ctl.url, 'GET', '/api/v1/whoami', {token, dispatcher: agent})).status
    const health = await http(ctl.url, 'GET', '/healthz', {dispatcher: agent})
    const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort((a, b) => b[1] - a[1]))
    console.log(
      `fuzz: ${cases.length} requests in ${seconds.toFixed(1)} s (seed ${SEED}, concurrency ${CONCURRENCY})\n` +
        `tokens at the end: ${JSON.stringify(tokenStatus)}\nstatus: ${JSON.stringify(sorted(byStatus))}\nerror codes: ${JSON.stringify(sorted(byCode))}\n` +
        `targets: ${JSON.stringify(sorted(byRoute))}\nkinds: ${JSON.stringify(sorted(byKind))}`,
    )

    expect(cases.length).toBeGreaterThanOrEqual(10_000)
    // Every route (new ones included: the generators walk ROUTES) got its share.
    expect(ids.filter((id) => (byRoute.get(id) ?? 0) < 100)).toEqual([])
    expect(failures.slice(0, 25), `${failures.length} failures (seed ${SEED})`).toEqual([])
    expect(health.status).toBe(200)
    expect(Object.values(tokenStatus), 'fixture tokens still valid').toEqual(
      Object.values(tokenStatus).map(() => 200),
    )
    await close()
    expect(integrityCheck(ctl.dbPath)).toBe('ok')
  })
})
