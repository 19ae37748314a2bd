// Endpoint-discovery decode benchmark (not a test): how many handshake initiations per second one
// core takes apart, per kind of datagram, beside a plain X25519 DH measured in the same run.
//   junk         148 bytes of type 1 that fail mac1 (what a flood costs once past the rate limit)
//   unknown key  a valid initiation from a key no node holds (mac1 + one DH, then stop)
//   full decode  a known node's initiation: mac1 + two DHs + timestamp on the node's first one,
//                one DH on later ones (the static-static DH is cached per key, as wireguard-go does)
//   server junk  junk through DiscoveryServer.handleDatagram from a new source address each time
//                (bucket table insert + LRU eviction + mac1)
// Run: `bash scripts/build.sh && source scripts/node-env.sh && node bench/discovery-decode.mjs
// [--seconds S] [--json]` (imports the built code from dist/). Figures are per case: the best of 7
// interleaved rounds (least disturbed by other load) and the median.
import {createPublicKey, diffieHellman, generateKeyPairSync} from 'node:crypto'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {parseArgs} from 'node:util'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = (p) => pathToFileURL(path.join(root, 'dist', 'controller', 'discovery', p)).href
const {InitiationDecoder, buildInitiation, tai64nFromUnixMs} = await import(dist('noise.js'))
const {DiscoveryServer} = await import(dist('server.js'))

const {values: opts} = parseArgs({
  options: {
    seconds: {type: 'string', default: '1'},
    json: {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
})
if (opts.help) {
  console.log('usage: node bench/discovery-decode.mjs [--seconds S] [--json]')
  process.exit(0)
}
const SECONDS = Number(opts.seconds)

const privateKey = () =>
  Buffer.from(generateKeyPairSync('x25519').privateKey.export({format: 'jwk'}).d, 'base64url').toString(
    'base64',
  )

/** Ops per second of fn over about `ms` milliseconds, in batches of 100. */
function measure(fn, ms) {
  let ops = 0
  const start = performance.now()
  const end = start + ms
  let now = start
  while (now < end) {
    for (let i = 0; i < 100; i++) fn(ops + i)
    ops += 100
    now = performance.now()
  }
  return ops / ((now - start) / 1000)
}

/**
 * Every case gets the same share of wall time in interleaved rounds (so a load change on a shared
 * machine hits all of them alike); per case the best round (least disturbed) and the median.
 */
function run(cases, seconds, rounds = 7) {
  for (const [, fn] of cases) measure(fn, 100) // warm-up (JIT)
  const samples = cases.map(() => [])
  const slice = (seconds * 1000) / rounds
  for (let r = 0; r < rounds; r++) cases.forEach(([, fn], i) => samples[i].push(measure(fn, slice)))
  return cases.map(([name], i) => {
    const xs = samples[i].sort((a, b) => a - b)
    return {name, best: xs[xs.length - 1], median: xs[Math.floor(xs.length / 2)]}
  })
}

const responderPrivate = privateKey()
const decoder = new InitiationDecoder(responderPrivate)
const uncached = new InitiationDecoder(responderPrivate, {staticCacheSize: 0})
const nodePrivate = privateKey()
const initiation = buildInitiation({
  responderPublic: decoder.publicKey,
  initiatorPrivate: nodePrivate,
  ephemeralPrivate: privateKey(),
  senderIndex: 1,
  timestamp: tai64nFromUnixMs(Date.now()),
})
const junk = Buffer.alloc(148, 0x5a)
junk.writeUInt32LE(1, 0)

// Sanity: each case takes the path it claims to.
const check = (what, got, want) => {
  if (got !== want) throw new Error(`bench setup: ${what} gave ${got}, expected ${want}`)
}
check('junk', decoder.decode(junk, () => true).reason, 'mac1')
check('unknown', decoder.decode(initiation, () => undefined).reason, 'unknown-key')
check('full', decoder.decode(initiation, () => true).ok, true)
check('full uncached', uncached.decode(initiation, () => true).ok, true)

// Baseline: one X25519 DH with the peer key imported from raw bytes as JWK, as the decoder does it.
const baseKp = generateKeyPairSync('x25519')
const peerRaw = Buffer.from(generateKeyPairSync('x25519').publicKey.export({format: 'jwk'}).x, 'base64url')
const baselineDh = () =>
  diffieHellman({
    privateKey: baseKp.privateKey,
    publicKey: createPublicKey({
      key: {kty: 'OKP', crv: 'X25519', x: peerRaw.toString('base64url')},
      format: 'jwk',
    }),
  })
const preImported = createPublicKey({
  key: {kty: 'OKP', crv: 'X25519', x: peerRaw.toString('base64url')},
  format: 'jwk',
})
const bareDh = () => diffieHellman({privateKey: baseKp.privateKey, publicKey: preImported})

const server = new DiscoveryServer({
  host: '127.0.0.1',
  port: 0,
  privateKey: responderPrivate,
  lookupNode: () => undefined,
  onObserved: () => undefined,
  limits: {maxSources: 65_536},
})
const serverJunk = (i) =>
  server.handleDatagram(junk, {address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 1})

const rows = run(
  [
    ['baseline: X25519 DH (JWK import + derive)', baselineDh],
    ['baseline: X25519 derive only (key pre-imported)', bareDh],
    ['junk (mac1 fails)', () => decoder.decode(junk, () => true)],
    ['unknown key (mac1 + 1 DH)', () => decoder.decode(initiation, () => undefined)],
    ['full decode, first from a key (mac1 + 2 DH)', () => uncached.decode(initiation, () => true)],
    ['full decode, later ones (mac1 + 1 DH, cached)', () => decoder.decode(initiation, () => true)],
    ['server junk, new source each (bucket + mac1)', serverJunk],
  ],
  SECONDS * 6,
)
const base = rows[0]
const result = rows.map((r) => ({
  case: r.name,
  perSecond: Math.round(r.best),
  microseconds: Number((1e6 / r.best).toFixed(2)),
  medianPerSecond: Math.round(r.median),
  vsBaselineDh: Number((r.best / base.best).toFixed(3)),
  medianVsBaselineDh: Number((r.median / base.median).toFixed(3)),
}))

const [load1] = (await import('node:os')).loadavg()
if (opts.json)
  console.log(JSON.stringify({node: process.version, seconds: SECONDS, loadavg: load1, result}, null, 2))
else {
  console.log(
    `discovery decode on one core (node ${process.version}, ≈ ${SECONDS} s per case in 7 interleaved rounds, load average ${load1.toFixed(1)})`,
  )
  const head = ['case', 'best ops/s', 'µs/op', '× DH', 'median ops/s', '× DH']
  console.log(
    `${head[0].padEnd(48)} ${head
      .slice(1)
      .map((h) => h.padStart(12))
      .join(' ')}`,
  )
  for (const r of result)
    console.log(
      `${r.case.padEnd(48)} ${[
        r.perSecond,
        r.microseconds.toFixed(2),
        r.vsBaselineDh.toFixed(3),
        r.medianPerSecond,
        r.medianVsBaselineDh.toFixed(3),
      ]
        .map((v) => String(v).padStart(12))
        .join(' ')}`,
    )
  console.log(
    '× DH: throughput relative to the first baseline in the same run (above 1 is cheaper than one DH).',
  )
}
