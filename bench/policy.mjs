// ACL policy benchmark (not a test): how long compilePolicy takes for a network of N nodes under
// a 100-rule policy, how many visibility classes come out, and the throughput of classOf, sees
// and inbound, each for a first (uncached) pass over class pairs (up to a million) and a second
// (cached) one.
// The policy and nodes are random but seeded, so runs compare: 200 users in 20 groups, 30 tags,
// 10 hosts ranges; 30% of nodes tagged.
// Run: `bash scripts/build.sh && source scripts/node-env.sh && node bench/policy.mjs
// [--nodes 1000,10000] [--rules 100] [--json]` (imports the built code from dist/).
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {parseArgs} from 'node:util'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const {parsePolicy, compilePolicy, runPolicyTests, canReach} = await import(
  pathToFileURL(path.join(root, 'dist', 'shared', 'policy', 'index.js')).href
)

const {values: opts} = parseArgs({
  options: {
    nodes: {type: 'string', default: '1000,10000'},
    rules: {type: 'string', default: '100'},
    json: {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
})
if (opts.help) {
  console.log('usage: node bench/policy.mjs [--nodes 1000,10000] [--rules 100] [--json]')
  process.exit(0)
}

/** mulberry32: a small seeded PRNG, so every run benchmarks the same policy and nodes. */
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const rand = rng(42)
const pick = (list) => list[Math.floor(rand() * list.length)]
const some = (list, max) => Array.from({length: 1 + Math.floor(rand() * max)}, () => pick(list))

const USERS = Array.from({length: 200}, (_, i) => `user${i}`)
const TAGS = Array.from({length: 30}, (_, i) => `tag:svc${i}`)
const GROUPS = Array.from({length: 20}, (_, i) => `group:team${i}`)
const HOSTS = Array.from({length: 10}, (_, i) => `lan${i}`)
const PORTS = ['22', '80,443', '5432', '8000-8100', '53', '*', '3000-3999', '9090']

function makePolicy(ruleCount) {
  const groups = Object.fromEntries(GROUPS.map((g, i) => [g, USERS.slice(i * 10, i * 10 + 15)]))
  const hosts = Object.fromEntries(HOSTS.map((h, i) => [h, `100.${64 + i}.0.0/16`]))
  const selectors = [...USERS.slice(0, 40), ...GROUPS, ...TAGS, ...HOSTS, '*']
  const acls = Array.from({length: ruleCount}, () => {
    const proto = pick(['tcp', 'tcp', 'tcp', 'udp', 'icmp', undefined])
    const dst = some(selectors, 3).map(
      (s) => `${s}:${proto === 'tcp' || proto === 'udp' ? pick(PORTS) : '*'}`,
    )
    return {
      src: some(
        selectors.filter((s) => s !== '*'),
        3,
      ),
      dst,
      ...(proto ? {proto} : {}),
    }
  })
  const tests = Array.from({length: 20}, () => ({
    src: pick([...USERS.slice(0, 40), ...TAGS]),
    deny: ['tag:svc0:1'],
  }))
  return JSON.stringify({groups, hosts, acls, tests}, null, 2)
}

function makeNodes(n) {
  return Array.from({length: n}, (_, i) => {
    const tagged = rand() < 0.3
    return {
      id: `n${i}`,
      address: `100.${64 + Math.floor(rand() * 16)}.${(i >> 8) & 255}.${i & 255}`,
      owner: pick(USERS),
      tags: tagged ? some(TAGS, 2) : [],
    }
  })
}

const ms = (t0) => performance.now() - t0
const perSecond = (ops, t) => Math.round(ops / (t / 1000))

const text = makePolicy(Number(opts.rules))
let t0 = performance.now()
const parsed = parsePolicy(text)
const parseMs = ms(t0)
if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors.slice(0, 3)))
const policy = parsed.policy
t0 = performance.now()
const failures = runPolicyTests(policy)
const testsMs = ms(t0)

const results = []
for (const n of opts.nodes.split(',').map(Number)) {
  const nodes = makeNodes(n)
  t0 = performance.now()
  const c = compilePolicy(policy, nodes)
  const compileMs = ms(t0)
  const classes = [...c.members.keys()]

  t0 = performance.now()
  for (const node of nodes) c.classOf(node)
  const classOfPerSec = perSecond(nodes.length, ms(t0))

  // At most MAX_PAIRS class pairs per pass (the first classes × all), to keep a run short.
  const MAX_PAIRS = 1_000_000
  const rows = classes.slice(0, Math.max(1, Math.floor(MAX_PAIRS / classes.length)))
  const pairs = rows.length * classes.length
  const pass = (fn) => {
    const t = performance.now()
    let yes = 0
    for (const a of rows) for (const b of classes) if (fn(a, b)) yes++
    return {perSec: perSecond(pairs, ms(t)), yes}
  }
  const seesCold = pass(c.sees)
  const seesWarm = pass(c.sees)
  const inboundCold = pass((a, b) => c.inbound(a, b) !== undefined)
  const inboundWarm = pass((a, b) => c.inbound(a, b) !== undefined)

  // What a naive hub would do instead: canReach over node pairs (sampled: 200,000 pairs).
  const sample = 200_000
  t0 = performance.now()
  for (let i = 0; i < sample; i++) canReach(policy, nodes[i % n], nodes[(i * 7919) % n], 'tcp', 5432)
  const canReachPerSec = perSecond(sample, ms(t0))

  results.push({
    nodes: n,
    classes: classes.length,
    compileMs: Math.round(compileMs),
    classOfPerSec,
    classPairs: pairs,
    seesVisibleShare: Math.round((seesWarm.yes / pairs) * 1000) / 1000,
    seesColdPerSec: seesCold.perSec,
    seesCachedPerSec: seesWarm.perSec,
    inboundColdPerSec: inboundCold.perSec,
    inboundCachedPerSec: inboundWarm.perSec,
    canReachPerSec,
  })
}

const summary = {
  rules: policy.rules.length,
  policyBytes: Buffer.byteLength(text),
  parseMs: Math.round(parseMs * 10) / 10,
  embeddedTests: policy.tests.length,
  testsMs: Math.round(testsMs * 10) / 10,
  testFailures: failures.length,
  results,
}
if (opts.json) console.log(JSON.stringify(summary, null, 2))
else {
  console.log(
    `policy: ${summary.rules} rules, ${summary.policyBytes} bytes; parse ${summary.parseMs} ms; ` +
      `${summary.embeddedTests} embedded tests in ${summary.testsMs} ms`,
  )
  const fmt = (x) => x.toLocaleString('en-US')
  for (const r of results) {
    console.log(
      `${fmt(r.nodes)} nodes: compile ${r.compileMs} ms, ${fmt(r.classes)} classes; ` +
        `classOf ${fmt(r.classOfPerSec)}/s; over ${fmt(r.classPairs)} class pairs: ` +
        `sees ${fmt(r.seesColdPerSec)}/s cold, ${fmt(r.seesCachedPerSec)}/s cached; ` +
        `inbound ${fmt(r.inboundColdPerSec)}/s cold, ${fmt(r.inboundCachedPerSec)}/s cached; ` +
        `(naive canReach ${fmt(r.canReachPerSec)}/s)`,
    )
  }
}
