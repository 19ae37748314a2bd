/**
 * Crash safety of registration: the controller runs as a child process (the built CLI), takes
 * concurrent registrations and is SIGKILLed mid-stream, three times over. After each restart on
 * the same data dir every registration that was answered 2xx must still be there unchanged,
 * no address may be assigned twice, and the SQLite file must pass PRAGMA integrity_check.
 * Also: no client input may take the process down (oversize WebSocket frames), and limits
 * (single-use keys, invite uses, max nodes, the address pool, one key per node) hold when
 * registrations race.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController} from '../../controller/testing/test-controller.js'
import WebSocket from 'ws'
import {LIMITS, WS_PATHS, type Node, type RegisterResponse} from '../../shared/protocol/control-api.js'
import {
  Api,
  CLI_BUILT,
  errorCode,
  http,
  integrityCheck,
  listAll,
  mapLimit,
  newAgent,
  registerBody,
  startCliController,
  uniqueCidr24,
  uniqueName,
  type ChildController,
} from './helpers.js'

const ADMIN_PASSWORD = 'crash-test-admin-password'
const ROUNDS = 3
const IN_FLIGHT = 12
/** Registrations offered per round; the kill comes long before they run out. */
const PER_ROUND = 400

interface Acked {
  id: string
  address: string
  publicKey: string
}

/** Sends one frame over the limit right after the upgrade; resolves with the close code. */
function sendOversizeFrame(url: string, wsPath: string, authorization?: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + wsPath, {
      headers: authorization ? {authorization} : {},
      perMessageDeflate: false,
    })
    const timer = setTimeout(() => ws.terminate(), 5_000)
    ws.on('open', () => ws.send('x'.repeat(LIMITS.maxFrameBytes + 1024)))
    ws.on('error', () => undefined)
    ws.on('close', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
}

describe('controller crash safety', () => {
  it('stays up when clients send WebSocket frames over the limit, with or without credentials', async () => {
    expect(CLI_BUILT, 'this test runs the built CLI: run `bash scripts/build.sh` first').toBe(true)
    const dataDir = mkdtempSync(path.join(tmpdir(), 'mesh-wsbig-'))
    let ctl: ChildController | undefined
    try {
      ctl = await startCliController({
        dataDir,
        dbPath: path.join(dataDir, 'controller.db'),
        adminPassword: ADMIN_PASSWORD,
      })
      const api = new Api(ctl.url)
      const {token} = await api.ok<{token: string}>('login', {
        body: {username: 'admin', password: ADMIN_PASSWORD},
      })
      const attempts: [string, string | undefined][] = [
        [WS_PATHS.netmap, undefined],
        [WS_PATHS.netmap, 'Bearer mnode_not-a-credential'],
        [WS_PATHS.events, undefined],
        [WS_PATHS.events, `Bearer ${token}`],
      ]
      for (const [wsPath, authorization] of attempts) {
        await sendOversizeFrame(ctl.url, wsPath, authorization)
        await new Promise((r) => setTimeout(r, 200))
        expect(
          ctl.child.exitCode,
          `controller exited after an oversize frame on ${wsPath} (${authorization ?? 'no token'}):\n${ctl.output.slice(-15).join('\n')}`,
        ).toBeNull()
        expect((await http(ctl.url, 'GET', '/healthz')).status).toBe(200)
      }
    } finally {
      await ctl?.kill()
      rmSync(dataDir, {recursive: true, force: true})
    }
  })

  it('keeps every acknowledged registration and never assigns an address twice across repeated SIGKILLs', async () => {
    expect(CLI_BUILT, 'the crash test runs the built CLI: run `bash scripts/build.sh` first').toBe(true)
    const dataDir = mkdtempSync(path.join(tmpdir(), 'mesh-crash-'))
    const dbPath = path.join(dataDir, 'controller.db')
    let ctl: ChildController | undefined
    const agents: ReturnType<typeof newAgent>[] = []
    const connect = async () => {
      ctl = await startCliController({dataDir, dbPath, adminPassword: ADMIN_PASSWORD})
      const agent = newAgent(IN_FLIGHT)
      agents.push(agent)
      const api = new Api(ctl.url, agent)
      const {token} = await api.ok<{token: string}>('login', {
        body: {username: 'admin', password: ADMIN_PASSWORD},
      })
      return {ctl, api, token, agent}
    }

    try {
      let {api, token, agent} = await connect()
      const net = await api.ok<{id: string}>('network.create', {
        token,
        body: {name: uniqueName('crash'), cidr: '10.64.0.0/12'},
      })
      const {key} = await api.ok<{key: string}>('authkey.create', {
        token,
        params: {network: net.id},
        body: {reusable: true, preApproved: true},
      })

      const acked = new Map<string, Acked>()
      /** Public keys of registrations whose outcome the client never learnt (in flight at the kill). */
      const unknown = new Set<string>()
      const failures: string[] = []

      for (let round = 1; round <= ROUNDS; round++) {
        const victim = ctl!
        const victimAgent = agent
        const killAfter = 15 + Math.floor(Math.random() * 30)
        let successes = 0
        let killed = false
        let killScheduled = false
        const roundStart = Date.now()
        await mapLimit(Array.from({length: PER_ROUND}), IN_FLIGHT, async () => {
          if (killed) return
          const body = registerBody({authKey: key})
          let reply
          try {
            reply = await http(victim.url, 'POST', '/api/v1/register', {
              body,
              dispatcher: victimAgent,
              timeoutMs: 10_000,
            })
          } catch {
            unknown.add(body.publicKey)
            return
          }
          if (reply.status === 201) {
            const {node} = reply.json as RegisterResponse
            acked.set(node.id, {id: node.id, address: node.address, publicKey: node.publicKey})
            if (node.publicKey !== body.publicKey)
              failures.push(`round ${round}: reply carries another public key`)
            if (++successes >= killAfter && !killScheduled) {
              killScheduled = true
              // A random few milliseconds later, so the kill lands at varying points of the
              // server's work; SIGKILL by the pid we started, with requests still in flight.
              await new Promise((resolve) => setTimeout(resolve, Math.random() * 15))
              killed = true
              await victim.kill()
            }
          } else {
            failures.push(`round ${round}: register answered ${reply.status}: ${reply.text.slice(0, 200)}`)
          }
        })
        if (!killed) await victim.kill()
        console.log(
          `crash round ${round}: ${successes} acknowledged before SIGKILL of pid ${victim.pid} ` +
            `(${Date.now() - roundStart} ms), ${unknown.size} outcomes unknown so far`,
        )
        expect(successes).toBeGreaterThanOrEqual(killAfter)
        expect(integrityCheck(dbPath), `integrity after SIGKILL ${round}`).toBe('ok')

        ;({api, token, agent} = await connect())
        const nodes = await listAll<Node>(api, 'node.list', {token, params: {network: net.id}})
        const byId = new Map(nodes.map((n) => [n.id, n]))
        for (const a of acked.values()) {
          const n = byId.get(a.id)
          if (!n) failures.push(`round ${round}: acknowledged node ${a.id} is gone after restart`)
          else if (n.address !== a.address || n.publicKey !== a.publicKey)
            failures.push(
              `round ${round}: node ${a.id} changed: ${JSON.stringify(a)} → ${n.address} ${n.publicKey}`,
            )
        }
        const addresses = nodes.map((n) => n.address)
        const dupes = addresses.filter((a, i) => addresses.indexOf(a) !== i)
        if (dupes.length) failures.push(`round ${round}: addresses assigned twice: ${dupes.join(', ')}`)
        const knownKeys = new Set([...[...acked.values()].map((a) => a.publicKey), ...unknown])
        const phantoms = nodes.filter((n) => !knownKeys.has(n.publicKey))
        if (phantoms.length) failures.push(`round ${round}: ${phantoms.length} nodes nobody registered`)
        console.log(
          `crash round ${round}: after restart ${nodes.length} nodes (${acked.size} acknowledged, ` +
            `${nodes.length - acked.size} of ${unknown.size} unknown outcomes committed)`,
        )
      }

      expect(failures).toEqual([])
      expect(acked.size).toBeGreaterThanOrEqual(ROUNDS * 15)
      await ctl!.stop()
      expect(ctl!.child.exitCode, 'exit code of a graceful stop').toBe(0)
      expect(integrityCheck(dbPath)).toBe('ok')
      // The server survived the whole run: a fresh start still serves.
      const last = await connect()
      expect((await http(last.ctl.url, 'GET', '/healthz')).status).toBe(200)
    } finally {
      await ctl?.kill()
      await Promise.all(agents.map((a) => a.destroy().catch(() => undefined)))
      rmSync(dataDir, {recursive: true, force: true})
    }
  })
})

describe('controller under concurrent registrations', () => {
  let ctl: Awaited<ReturnType<typeof startTestController>> | undefined
  let api: Api
  let token: string
  const agent = newAgent(20)

  beforeAll(async () => {
    ctl = await startTestController()
    api = new Api(ctl.url, agent)
    token = ctl.adminToken
  })
  afterAll(async () => {
    await ctl?.close()
    await agent.close()
  })

  const network = (body: Record<string, unknown> = {}) =>
    api.ok<{id: string}>('network.create', {
      token,
      body: {name: uniqueName('race'), cidr: uniqueCidr24(), ...body},
    })
  /** Fires all bodies at once; returns the statuses and error codes. */
  const burst = async (bodies: unknown[]) => {
    const replies = await Promise.all(bodies.map((body) => api.call('register', {body})))
    const ok = replies.filter((r) => r.status === 201).map((r) => (r.json as RegisterResponse).node)
    const codes = replies.filter((r) => r.status !== 201).map((r) => errorCode(r) ?? String(r.status))
    return {ok, codes}
  }

  it('admits exactly one of 20 simultaneous registrations with a single-use auth key', async () => {
    const net = await network()
    const {key} = await api.ok<{key: string}>('authkey.create', {token, params: {network: net.id}, body: {}})
    const {ok, codes} = await burst(Array.from({length: 20}, () => registerBody({authKey: key})))
    expect(ok).toHaveLength(1)
    expect(new Set(codes)).toEqual(new Set(['AUTHKEY_USED']))
  })

  it('admits exactly 3 of 20 simultaneous registrations with an invite for 3 uses', async () => {
    const net = await network()
    const {code} = await api.ok<{code: string}>('invite.create', {
      token,
      params: {network: net.id},
      body: {maxUses: 3},
    })
    const {ok, codes} = await burst(Array.from({length: 20}, () => registerBody({invite: code})))
    expect(ok).toHaveLength(3)
    expect(new Set(codes)).toEqual(new Set(['INVITE_USED_UP']))
  })

  it('registers one public key once when it is sent 10 times at once', async () => {
    const net = await network()
    const {key} = await api.ok<{key: string}>('authkey.create', {
      token,
      params: {network: net.id},
      body: {reusable: true},
    })
    const publicKey = registerBody({authKey: key}).publicKey
    const {ok, codes} = await burst(
      Array.from({length: 10}, () => ({...registerBody({authKey: key}), publicKey})),
    )
    expect(ok).toHaveLength(1)
    expect(new Set(codes)).toEqual(new Set(['PUBLIC_KEY_TAKEN']))
  })

  it('stops at maxNodes and at the end of the address pool, with distinct addresses', async () => {
    const limited = await network({maxNodes: 5})
    const small = await network({
      cidr: `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}.8/29`,
    })
    for (const [net, room, code] of [
      [limited, 5, 'NETWORK_MAX_NODES'],
      [small, 6, 'ADDRESS_POOL_EXHAUSTED'],
    ] as const) {
      const {key} = await api.ok<{key: string}>('authkey.create', {
        token,
        params: {network: net.id},
        body: {reusable: true},
      })
      const {ok, codes} = await burst(Array.from({length: 20}, () => registerBody({authKey: key})))
      expect(ok).toHaveLength(room)
      expect(new Set(ok.map((n) => n.address)).size).toBe(room)
      expect(new Set(codes)).toEqual(new Set([code]))
    }
  })
})
