// Two real wireguard-go peers in two network namespaces with no route between them reach each
// other only through the relay: each peer's WireGuard endpoint is its RelayClient's 127.0.0.1
// shim (in its own namespace), and the relay server runs in a third namespace that both reach
// over a veth. Needs root, ip, wg, ping, wireguard-go and a built dist/; skips otherwise.
//
// Lab (prefix P per run): <P>-h holds the relay on 198.51.100.1/30 (to a) and 198.51.100.5/30
// (to b), forwarding off; <P>-a is 198.51.100.2/30, <P>-b 198.51.100.6/30, no default routes.
// Tunnel addresses 100.64.77.1 (a) and 100.64.77.2 (b). Nothing touches the root namespace.
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {createInterface} from 'node:readline'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {waitFor} from '../testing/harness.js'

const has = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0
const root = path.resolve(import.meta.dirname, '..', '..')
const dist = (p: string) => path.join(root, 'dist', p)
const canRun =
  process.getuid?.() === 0 &&
  has('ip', ['-V']) &&
  has('wg', ['--version']) &&
  has('wireguard-go', ['--version']) &&
  has('ping', ['-V']) &&
  fs.existsSync(dist('daemon/relay/client.js')) &&
  fs.existsSync(dist('controller/relay/server.js'))

const P = `rl${randomBytes(2).toString('hex')}`
const NS = {h: `${P}-h`, a: `${P}-a`, b: `${P}-b`}
const WG = {a: `${P}-wa`, b: `${P}-wb`}
const TUN = {a: '100.64.77.1', b: '100.64.77.2'}
const RELAY_ADDR = {a: '198.51.100.1', b: '198.51.100.5'}
const IDS = {a: 'nd_a', b: 'nd_b'}

function sh(cmd: string, args: string[], opts: {ns?: string; input?: string} = {}): string {
  const [bin, argv] = opts.ns ? ['ip', ['netns', 'exec', opts.ns, cmd, ...args]] : [cmd, args]
  const r = spawnSync(bin, argv, {
    encoding: 'utf8',
    timeout: 20_000,
    ...(opts.input !== undefined && {input: opts.input}),
  })
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} (ns ${opts.ns ?? '-'}): ${r.stderr || r.error}`)
  return r.stdout
}

// The relay and the relay clients run as small Node processes inside their namespaces, on the
// compiled modules; they speak JSON lines: one line when ready, one answer per stdin line.
const RELAY_SCRIPT = `
import {createServer} from 'node:http'
import {RelayServer} from ${JSON.stringify(dist('controller/relay/server.js'))}
const creds = JSON.parse(process.env.RELAY_CREDS)
const relay = new RelayServer({authenticate: async (c) => creds[c]})
const http = createServer((q, s) => s.writeHead(404).end())
http.on('upgrade', (req, socket, head) => relay.handleUpgrade(req, socket, head))
http.listen(Number(process.env.RELAY_PORT), '0.0.0.0', () => console.log(JSON.stringify({port: http.address().port})))
process.stdin.on('data', async () => {
  const sum = async (m) => (await m.get()).values.reduce((n, v) => n + v.value, 0)
  console.log(JSON.stringify({packets: await sum(relay.metrics.packets), dropped: await sum(relay.metrics.dropped)}))
})
`
const CLIENT_SCRIPT = `
import {RelayClient} from ${JSON.stringify(dist('daemon/relay/client.js'))}
const e = process.env
const c = new RelayClient({controller: e.RELAY_URL, credential: e.RELAY_CRED, wireGuardPort: Number(e.WG_PORT), selfId: e.SELF_ID || undefined})
await c.whenOpen()
const shim = await c.shimFor(e.PEER_ID)
console.log(JSON.stringify(shim))
// One answer (the shim's stats) per line: '?' asks, 'hold' and 'deliver' set the shim's mode first.
let buf = ''
process.stdin.on('data', (d) => {
  buf += d.toString()
  let nl
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const cmd = buf.slice(0, nl)
    buf = buf.slice(nl + 1)
    if (cmd === 'hold') c.setMode(e.PEER_ID, 'hold', {maxMs: 10000, maxPackets: 64})
    if (cmd === 'deliver') c.setMode(e.PEER_ID, 'deliver')
    console.log(JSON.stringify(c.stats(e.PEER_ID)))
  }
})
`

interface LineProc {
  readonly proc: ChildProcess
  next(timeoutMs?: number): Promise<Record<string, unknown>>
  ask(): Promise<Record<string, unknown>>
  command(cmd: 'hold' | 'deliver'): Promise<Record<string, unknown>>
}

function startScript(
  ns: string,
  script: string,
  env: Record<string, string>,
  procs: ChildProcess[],
): LineProc {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {...process.env, ...env},
  })
  procs.push(proc)
  let stderr = ''
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)))
  const lines: string[] = []
  const waiters: (() => void)[] = []
  createInterface({input: proc.stdout!}).on('line', (l) => {
    lines.push(l)
    waiters.splice(0).forEach((w) => w())
  })
  proc.on('exit', () => waiters.splice(0).forEach((w) => w()))
  const next = (timeoutMs = 15_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no line from ${ns} in ${timeoutMs} ms: ${stderr}`)),
        timeoutMs,
      )
      const check = () => {
        if (lines.length > 0) {
          clearTimeout(timer)
          resolve(JSON.parse(lines.shift()!) as Record<string, unknown>)
        } else if (proc.exitCode !== null) {
          clearTimeout(timer)
          reject(new Error(`process in ${ns} exited ${proc.exitCode}: ${stderr}`))
        } else waiters.push(check)
      }
      check()
    })
  return {
    proc,
    next,
    ask: () => {
      proc.stdin!.write('?\n')
      return next()
    },
    command: (cmd) => {
      proc.stdin!.write(`${cmd}\n`)
      return next()
    },
  }
}

describe.skipIf(!canRun)('relay between two wireguard-go peers in namespaces', () => {
  const procs: ChildProcess[] = []
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'relay-root-'))
  let relay: LineProc
  const clients: Partial<Record<'a' | 'b', LineProc>> = {}
  const shims: Partial<Record<'a' | 'b', {endpoint: string; port: number}>> = {}
  const keys: Record<string, {priv: string; pub: string}> = {}

  beforeAll(async () => {
    for (const ns of Object.values(NS)) sh('ip', ['netns', 'add', ns])
    for (const ns of Object.values(NS)) sh('ip', ['link', 'set', 'lo', 'up'], {ns})
    sh('sysctl', ['-qw', 'net.ipv4.ip_forward=0'], {ns: NS.h})
    for (const n of ['a', 'b'] as const) {
      const hubIf = `${P}h${n}`
      const nodeIf = `${P}n${n}`
      sh('ip', ['link', 'add', hubIf, 'netns', NS.h, 'type', 'veth', 'peer', 'name', nodeIf, 'netns', NS[n]])
      const base = n === 'a' ? 0 : 4
      sh('ip', ['addr', 'add', `198.51.100.${base + 1}/30`, 'dev', hubIf], {ns: NS.h})
      sh('ip', ['addr', 'add', `198.51.100.${base + 2}/30`, 'dev', nodeIf], {ns: NS[n]})
      sh('ip', ['link', 'set', hubIf, 'up'], {ns: NS.h})
      sh('ip', ['link', 'set', nodeIf, 'up'], {ns: NS[n]})
    }

    relay = startScript(
      NS.h,
      RELAY_SCRIPT,
      {
        RELAY_PORT: '0',
        RELAY_CREDS: JSON.stringify({
          'cred-a': {nodeId: IDS.a, networkId: 'n1'},
          'cred-b': {nodeId: IDS.b, networkId: 'n1'},
        }),
      },
      procs,
    )
    const {port} = (await relay.next()) as {port: number}

    for (const n of ['a', 'b'] as const) {
      const priv = sh('wg', ['genkey']).trim()
      keys[n] = {priv, pub: sh('wg', ['pubkey'], {input: priv}).trim()}
      const wgProc = spawn('ip', ['netns', 'exec', NS[n], 'wireguard-go', '-f', WG[n]], {
        stdio: 'ignore',
        env: {...process.env, LOG_LEVEL: 'error'},
      })
      procs.push(wgProc)
      await waitFor(
        `${WG[n]} to exist`,
        () => has('ip', ['netns', 'exec', NS[n], 'ip', 'link', 'show', WG[n]]),
        10_000,
        50,
      )
      const keyFile = path.join(dir, `${n}.key`)
      fs.writeFileSync(keyFile, keys[n].priv + '\n', {mode: 0o600})
      sh('wg', ['set', WG[n], 'private-key', keyFile], {ns: NS[n]})
      sh('ip', ['addr', 'add', `${TUN[n]}/24`, 'dev', WG[n]], {ns: NS[n]})
      sh('ip', ['link', 'set', WG[n], 'up'], {ns: NS[n]})
    }
    for (const n of ['a', 'b'] as const) {
      const other = n === 'a' ? 'b' : 'a'
      const wgPort = sh('wg', ['show', WG[n], 'listen-port'], {ns: NS[n]}).trim()
      const c = startScript(
        NS[n],
        CLIENT_SCRIPT,
        {
          RELAY_URL: `http://${RELAY_ADDR[n]}:${port}`,
          RELAY_CRED: `cred-${n}`,
          WG_PORT: wgPort,
          PEER_ID: IDS[other],
          SELF_ID: IDS[n],
        },
        procs,
      )
      clients[n] = c
      shims[n] = (await c.next()) as {endpoint: string; port: number}
      sh(
        'wg',
        [
          'set',
          WG[n],
          'peer',
          keys[other]!.pub,
          'allowed-ips',
          `${TUN[other]}/32`,
          'endpoint',
          shims[n].endpoint,
        ],
        {ns: NS[n]},
      )
    }
  })

  afterAll(() => {
    for (const p of procs) if (p.pid !== undefined && p.exitCode === null) p.kill('SIGKILL')
    for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('the two namespaces have no route to each other but both reach the relay', () => {
    expect(has('ip', ['netns', 'exec', NS.a, 'ping', '-c1', '-W1', '198.51.100.6'])).toBe(false)
    expect(has('ip', ['netns', 'exec', NS.a, 'ping', '-c1', '-W1', RELAY_ADDR.a])).toBe(true)
    expect(has('ip', ['netns', 'exec', NS.b, 'ping', '-c1', '-W1', RELAY_ADDR.b])).toBe(true)
  })

  it('the peers ping each other over the tunnel through the relay, with their shims as endpoints', async () => {
    // The first ping starts the handshake; wait for the tunnel, then measure.
    await waitFor(
      'the tunnel to carry a ping',
      () => has('ip', ['netns', 'exec', NS.a, 'ping', '-c1', '-W1', TUN.b]),
      20_000,
      10,
    )
    const out = sh('ping', ['-c', '20', '-i', '0.05', '-W', '2', TUN.b], {ns: NS.a})
    const loss = Number(/(\d+(?:\.\d+)?)% packet loss/.exec(out)?.[1])
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(out)?.[1]
    console.log(`relay ping a -> b: ${loss}% loss, avg rtt ${rtt} ms`)
    expect(loss).toBe(0)
    expect(has('ip', ['netns', 'exec', NS.b, 'ping', '-c3', '-i', '0.05', '-W2', TUN.a])).toBe(true)

    for (const n of ['a', 'b'] as const) {
      // WireGuard kept the shim as the endpoint (the relayed packets come from it).
      expect(sh('wg', ['show', WG[n], 'endpoints'], {ns: NS[n]}).trim().split(/\s+/)[1]).toBe(
        shims[n]!.endpoint,
      )
      const stats = (await clients[n]!.ask()) as {toRelayPackets: number; toWireGuardPackets: number}
      expect(stats.toRelayPackets).toBeGreaterThanOrEqual(23)
      expect(stats.toWireGuardPackets).toBeGreaterThanOrEqual(23)
    }
    const m = (await relay.ask()) as {packets: number; dropped: number}
    expect(m.packets).toBeGreaterThanOrEqual(46)
    expect(m.dropped).toBe(0)
  })

  // Both WireGuards initiate and each one's initiation reaches the other only after it sent its
  // own (the shims hold what the relay brings until both sent): unsettled, each answers the
  // other's, refuses the answer to its own, and nothing moves until WireGuard's 5 s retry.
  it('completes a handshake whose initiations cross in the relay long before the 5 s WireGuard retry (one side resends its own)', async () => {
    const peerArgs = (n: 'a' | 'b') => {
      const other = n === 'a' ? 'b' : 'a'
      return ['peer', keys[other]!.pub, 'allowed-ips', `${TUN[other]}/32`, 'endpoint', shims[n]!.endpoint]
    }
    const sent = async (n: 'a' | 'b') =>
      ((await clients[n]!.ask()) as {toRelayPackets: number}).toRelayPackets
    // Fresh handshake state on both sides.
    for (const n of ['a', 'b'] as const) {
      const other = n === 'a' ? 'b' : 'a'
      sh('wg', ['set', WG[n], 'peer', keys[other]!.pub, 'remove'], {ns: NS[n]})
      await clients[n]!.command('hold')
    }
    // a initiates first (a new peer with a keepalive sends an initiation at once)...
    const aBefore = await sent('a')
    sh('wg', ['set', WG.a, ...peerArgs('a'), 'persistent-keepalive', '1'], {ns: NS.a})
    await waitFor('a to send its initiation', async () => (await sent('a')) > aBefore, 5000, 10)
    // ...then b, whose WireGuard has not seen a's initiation yet (held in b's shim).
    const bBefore = await sent('b')
    sh('wg', ['set', WG.b, ...peerArgs('b'), 'persistent-keepalive', '1'], {ns: NS.b})
    await waitFor('b to send its initiation', async () => (await sent('b')) > bBefore, 5000, 10)
    const released = Date.now()
    for (const n of ['a', 'b'] as const) await clients[n]!.command('deliver')
    const handshook = (n: 'a' | 'b') =>
      sh('wg', ['show', WG[n], 'latest-handshakes'], {ns: NS[n]}).trim().split(/\s+/)[1] !== '0'
    await waitFor('both sides to complete the handshake', () => handshook('a') && handshook('b'), 4000, 20)
    console.log(`crossing initiations: handshake ${Date.now() - released} ms after the holds ended`)
    expect(has('ip', ['netns', 'exec', NS.a, 'ping', '-c1', '-W1', TUN.b])).toBe(true)
    for (const n of ['a', 'b'] as const)
      sh('wg', ['set', WG[n], 'peer', keys[n === 'a' ? 'b' : 'a']!.pub, 'persistent-keepalive', '0'], {
        ns: NS[n],
      })
  })
})
