/**
 * Drives udp-probe.js inside lab namespaces: echo servers, long-running clients that report
 * every datagram they get (so a test waits on events, never on time), one-shot senders and TCP
 * checks. Processes live in lab namespaces, so lab teardown kills any the test left behind.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'
import {nodeScriptArgv, projectRoot} from '../self.js'
import {run} from './sh.js'

export const udpProbeJs = (): string => path.join(projectRoot(), 'dist', 'cli', 'lib', 'lab', 'udp-probe.js')

export interface ProbeEvent {
  ready?: unknown
  from?: string
  data?: Record<string, unknown>
  error?: string
}

/** A running probe process whose stdout lines are events; waiters resolve as lines arrive. */
export class ProbeProcess {
  readonly events: ProbeEvent[] = []
  readonly child: ChildProcess
  #waiters = new Set<() => void>()
  #exited = false
  #stderr = ''

  constructor(ns: string, args: string[]) {
    this.child = spawn('ip', ['netns', 'exec', ns, ...nodeScriptArgv(udpProbeJs()), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    readline.createInterface({input: this.child.stdout!}).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as ProbeEvent)
      } catch {
        this.events.push({error: `bad line ${line.slice(0, 200)}`})
      }
      this.#wake()
    })
    this.child.stderr!.on('data', (d: Buffer) => {
      if (this.#stderr.length < 10_000) this.#stderr += d.toString()
    })
    this.child.on('exit', () => {
      this.#exited = true
      this.#wake()
    })
    this.child.on('error', () => undefined)
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w()
  }

  /** Resolves with the first event (from `fromIndex` on) matching `pred`; rejects after `timeoutMs`. */
  waitEvent(pred: (e: ProbeEvent) => boolean, timeoutMs: number, fromIndex = 0): Promise<ProbeEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const e = this.events.slice(fromIndex).find(pred)
        if (e) {
          done()
          resolve(e)
          return true
        }
        if (this.#exited) {
          done()
          reject(new Error(`probe exited before the awaited event: ${this.#stderr.slice(-500)}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        done()
        reject(
          new Error(
            `no awaited probe event within ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-5))}`,
          ),
        )
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(check)
      }
      if (!check()) this.#waiters.add(check)
    })
  }

  send(cmd: Record<string, unknown>): void {
    this.child.stdin!.write(JSON.stringify(cmd) + '\n')
  }

  /** Stops the process (it was started by us: killed by its own pid). */
  stop(): void {
    if (!this.#exited && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
}

/** A UDP echo server bound on each ADDR:PORT inside `ns`; resolves once all are bound. */
export async function startEchoServer(
  ns: string,
  binds: string[],
  timeoutMs = 10_000,
): Promise<ProbeProcess> {
  const p = new ProbeProcess(ns, ['server', ...binds])
  try {
    await p.waitEvent((e) => e.ready !== undefined, timeoutMs)
  } catch (err) {
    p.stop()
    throw err
  }
  return p
}

/** A UDP client on 0.0.0.0:port inside `ns`. */
export class UdpProbeClient extends ProbeProcess {
  port = 0
  #nextId = 1

  static async start(ns: string, port = 0, timeoutMs = 10_000): Promise<UdpProbeClient> {
    const c = new UdpProbeClient(ns, ['client', String(port)])
    try {
      const ready = await c.waitEvent((e) => e.ready !== undefined, timeoutMs)
      c.port = (ready.ready as {port: number}).port
    } catch (err) {
      c.stop()
      throw err
    }
    return c
  }

  /**
   * Sends an echo request to `to` (ADDR:PORT), `tries` times at most, each waiting `perTryMs`
   * for the answer; resolves with the `mapped` address:port the far end saw and who answered,
   * or undefined when nothing answered.
   */
  async request(
    to: string,
    opts: {replyFrom?: string; tries?: number; perTryMs?: number} = {},
  ): Promise<{mapped: string; server: string; from: string} | undefined> {
    const tries = opts.tries ?? 3
    for (let i = 0; i < tries; i++) {
      const id = this.#nextId++
      const from = this.events.length
      this.send({to, id, echo: true, ...(opts.replyFrom ? {replyFrom: opts.replyFrom} : {})})
      try {
        const e = await this.waitEvent((ev) => ev.data?.id === id, opts.perTryMs ?? 1000, from)
        return {mapped: String(e.data!.mapped), server: String(e.data!.server), from: e.from!}
      } catch {
        // no answer to this try
      }
    }
    return undefined
  }

  /** Datagrams received from `address` (any port) so far, replies to our requests excluded. */
  unsolicitedFrom(address: string): ProbeEvent[] {
    return this.events.filter((e) => e.from?.startsWith(`${address}:`) && e.data?.mapped === undefined)
  }
}

/** Sends one datagram {text} from `from` to `to` (ADDR:PORT each) inside `ns`. */
export async function sendUdpOnce(ns: string, from: string, to: string, text: string): Promise<void> {
  const [node, ...script] = nodeScriptArgv(udpProbeJs())
  const r = await run(node!, [...script, 'send', from, to, text], {ns, timeoutMs: 10_000})
  if (r.code !== 0) throw new Error(`udp-probe send in ${ns} failed: ${r.stdout}${r.stderr}`)
}

/** True when a TCP connection from `ns` to `to` (ADDR:PORT) is accepted within 5 s. */
export async function tcpConnects(ns: string, to: string): Promise<boolean> {
  const [node, ...script] = nodeScriptArgv(udpProbeJs())
  const r = await run(node!, [...script, 'tcp', to], {ns, timeoutMs: 10_000})
  return r.code === 0
}
