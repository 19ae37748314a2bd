/**
 * Netcheck checks this host's UDP path to the controller's STUN server and names the NAT in front
 * of it: public endpoint, mapping and filtering behaviour (RFC 4787) found with the RFC 5780 §4
 * tests, port preservation, and a verdict for direct connections (shared/nat/net-report.ts).
 * It does not measure relays; `mesh netcheck` adds that.
 *
 * Algorithm (numbers referred to below):
 *  1. Test I from socket A to the server's primary address P: no answer within the retransmit
 *     schedule means no UDP. The answer gives the public endpoint M1 and OTHER-ADDRESS O.
 *  2. Mapping, still from socket A (RFC 5780 §4.3): test II to (O.address, P.port); the same
 *     mapping as M1 means endpoint-independent. Otherwise test III to O; the same mapping as test
 *     II means address-dependent, a new one address-and-port-dependent. A server whose alternate
 *     differs only in port can tell endpoint-independent from address-and-port-dependent only.
 *  3. Filtering, from a fresh socket B that has only ever sent to P (RFC 5780 §4.4: socket A's
 *     mapping tests have already opened its NAT to O), in parallel with 2: test II asks P to answer
 *     from the other address and port; an answer means endpoint-independent. Test III asks for the
 *     other port only; an answer means address-dependent, none to either address-and-port-dependent.
 *     An answer must come from exactly the endpoint asked for: a server that ignored the
 *     CHANGE-REQUEST would otherwise pass for a cone NAT.
 *  4. Everything runs under one deadline (totalTimeoutMs); what did not finish is `unknown`.
 *
 * Retransmits follow RFC 5389 §7.2.1 with a shorter RTO: sends at 0, rto, 3·rto, 7·rto…
 */

import {randomBytes} from 'node:crypto'
import os from 'node:os'
import {systemClock, type Clock, type TimerHandle} from '../../shared/clock.js'
import {canonicalIp} from '../../shared/net/ip-bytes.js'
import type {UdpBind, UdpEndpoint, UdpSocket} from '../../shared/net/udp.js'
import {
  bindingRequest,
  encodeMessage,
  findAttribute,
  METHOD_BINDING,
  tryDecodeMessage,
  type StunAddress,
} from '../../shared/stun/codec.js'
import {
  directOutlook,
  type FilteringBehaviour,
  type MappingBehaviour,
  type NetReport,
} from '../../shared/nat/net-report.js'

export interface NetcheckOptions {
  /** The controller's STUN server (primary address). */
  readonly server: UdpEndpoint
  /** Socket factory: node:dgram in meshd, a simulated network in tests. */
  readonly bind: UdpBind
  /** Local address to bind the probe sockets to; default the unspecified address of the server's family. */
  readonly bindAddress?: string
  readonly clock?: Clock
  /** First retransmit timeout, ms (default 200); doubles after each send. */
  readonly rtoMs?: number
  /** Sends per transaction, the first included (default 4). */
  readonly maxSends?: number
  /** A transaction with no answer after this long (from its first send) has failed, ms (default 2,500). */
  readonly transactionTimeoutMs?: number
  /** Bound on the whole check, ms (default 6,000). */
  readonly totalTimeoutMs?: number
  /** This host's addresses, to tell "no NAT" when bound to the unspecified address; default os.networkInterfaces(). */
  readonly localAddresses?: () => readonly string[]
  readonly logf?: (msg: string) => void
}

type Change = {changeIp: boolean; changePort: boolean}

type TxResult =
  | {kind: 'ok'; mapped: UdpEndpoint; from: UdpEndpoint; other?: UdpEndpoint; rttMs: number}
  | {kind: 'timeout'}
  /** The run's deadline passed first: says nothing about the network. */
  | {kind: 'aborted'}
  /** An error response, an answer from the wrong endpoint, or a success without an address. */
  | {kind: 'unsupported'; why: string}

interface Pending {
  readonly expectFrom: UdpEndpoint
  /** When the latest (re)transmission left: the RTT is taken from it (retransmits make it a lower bound). */
  lastSentAt: number
  settle(r: TxResult): void
}

/** One probe socket and the transactions in flight on it. */
class Prober {
  private readonly pending = new Map<string, Pending>()

  constructor(
    readonly sock: UdpSocket,
    private readonly nc: NetcheckRun,
  ) {
    sock.onMessage((data, from) => this.onMessage(data, from))
  }

  /** Runs one Binding transaction; resolves (never rejects) with its outcome. */
  transact(to: UdpEndpoint, change?: Change, expectFrom: UdpEndpoint = to): Promise<TxResult> {
    const {clock, rtoMs, maxSends, transactionTimeoutMs} = this.nc
    if (this.nc.aborted) return Promise.resolve({kind: 'aborted'})
    const tid = randomBytes(12)
    const key = tid.toString('hex')
    const packet = encodeMessage(bindingRequest(tid, change))
    return new Promise<TxResult>((resolve) => {
      const timers: TimerHandle[] = []
      let sends = 0
      const send = (): void => {
        sends++
        entry.lastSentAt = clock.now()
        this.sock.send(packet, to)
        if (sends < maxSends) timers.push(clock.setTimeout(send, rtoMs * 2 ** (sends - 1)))
      }
      const entry: Pending = {
        expectFrom,
        lastSentAt: clock.now(),
        settle: (r) => {
          if (!this.pending.delete(key)) return
          for (const t of timers) clock.clearTimeout(t)
          this.nc.unregister(entry)
          resolve(r)
        },
      }
      this.pending.set(key, entry)
      this.nc.register(entry)
      timers.push(clock.setTimeout(() => entry.settle({kind: 'timeout'}), transactionTimeoutMs))
      send()
    })
  }

  private onMessage(data: Buffer, from: UdpEndpoint): void {
    // Anything that is not an answer to one of our transactions is ignored: a reply is only
    // trusted after its 96-bit random transaction id matched.
    const d = tryDecodeMessage(data)
    if (!d.ok) return
    const msg = d.message
    if (msg.method !== METHOD_BINDING || (msg.cls !== 'success' && msg.cls !== 'error')) return
    const p = this.pending.get(msg.transactionId.toString('hex'))
    if (p === undefined) return
    if (msg.cls === 'error') {
      const code = findAttribute(msg, 'error-code')?.code
      return p.settle({kind: 'unsupported', why: `error ${code ?? 'without a code'}`})
    }
    if (from.address !== p.expectFrom.address || from.port !== p.expectFrom.port) {
      return p.settle({kind: 'unsupported', why: `answer from ${fmt(from)}, expected ${fmt(p.expectFrom)}`})
    }
    const mapped =
      findAttribute(msg, 'xor-mapped-address')?.address ?? findAttribute(msg, 'mapped-address')?.address
    if (mapped === undefined) return p.settle({kind: 'unsupported', why: 'success without a mapped address'})
    const other = findAttribute(msg, 'other-address')?.address
    p.settle({
      kind: 'ok',
      mapped: endpoint(mapped),
      from,
      ...(other !== undefined && {other: endpoint(other)}),
      rttMs: this.nc.clock.now() - p.lastSentAt,
    })
  }
}

/** The state of one run(): shared by its probers, so the deadline can end every transaction. */
class NetcheckRun {
  aborted = false
  private readonly live = new Set<Pending>()

  constructor(
    readonly clock: Clock,
    readonly rtoMs: number,
    readonly maxSends: number,
    readonly transactionTimeoutMs: number,
  ) {}

  register(p: Pending): void {
    this.live.add(p)
  }
  unregister(p: Pending): void {
    this.live.delete(p)
  }
  abort(): void {
    this.aborted = true
    for (const p of [...this.live]) p.settle({kind: 'aborted'})
  }
}

export class Netcheck {
  private readonly clock: Clock

  constructor(private readonly opts: NetcheckOptions) {
    this.clock = opts.clock ?? systemClock
  }

  /** Runs the checks once (within totalTimeoutMs) and returns the report. Rejects only when a socket cannot be bound. */
  async run(): Promise<NetReport> {
    const o = this.opts
    const clock = this.clock
    const log = o.logf ?? (() => {})
    const started = clock.now()
    const server = {address: canonicalIp(o.server.address) ?? o.server.address, port: o.server.port}
    const v6 = server.address.includes(':')
    const bindAddress = o.bindAddress ?? (v6 ? '::' : '0.0.0.0')
    const nc = new NetcheckRun(clock, o.rtoMs ?? 200, o.maxSends ?? 4, o.transactionTimeoutMs ?? 2500)
    const deadline = clock.setTimeout(() => nc.abort(), o.totalTimeoutMs ?? 6000)
    const sockets: UdpSocket[] = []
    try {
      const a = new Prober(await o.bind({address: bindAddress, port: 0}), nc)
      sockets.push(a.sock)
      const b = new Prober(await o.bind({address: bindAddress, port: 0}), nc)
      sockets.push(b.sock)

      // Step 1.
      const t1 = await a.transact(server)
      if (t1.kind !== 'ok') {
        log(`netcheck: no answer from ${fmt(server)} (${t1.kind === 'unsupported' ? t1.why : t1.kind})`)
        return this.report({started, server, udp: false, local: a.sock.local})
      }
      const other = t1.other !== undefined && isUsableOther(t1.other, server) ? t1.other : undefined
      // Steps 2 and 3, in parallel on their own sockets.
      const [mapping, filtering] = await Promise.all([
        other === undefined ? ('unknown' as const) : this.mapping(a, server, other, t1.mapped, log),
        other === undefined ? ('unknown' as const) : this.filtering(b, server, other, log),
      ])
      const local = a.sock.local
      return this.report({
        started,
        server,
        udp: true,
        local,
        mapped: t1.mapped,
        other,
        latencyMs: t1.rttMs,
        mapping,
        filtering,
        behindNat: !this.isOwnEndpoint(t1.mapped, local),
      })
    } finally {
      clock.clearTimeout(deadline)
      nc.abort()
      for (const s of sockets) s.close()
    }
  }

  /** Step 2. */
  private async mapping(
    a: Prober,
    server: UdpEndpoint,
    other: UdpEndpoint,
    m1: UdpEndpoint,
    log: (m: string) => void,
  ): Promise<MappingBehaviour> {
    if (other.address === server.address) {
      // Only a second port: a different mapping means the port matters.
      const t = await a.transact({address: server.address, port: other.port})
      if (t.kind !== 'ok') return unknownBecause(log, 'mapping test II', t)
      return same(t.mapped, m1) ? 'endpoint-independent' : 'address-and-port-dependent'
    }
    const t2 = await a.transact({address: other.address, port: server.port})
    if (t2.kind !== 'ok') return unknownBecause(log, 'mapping test II', t2)
    if (same(t2.mapped, m1)) return 'endpoint-independent'
    if (other.port === server.port) return 'endpoint-dependent'
    const t3 = await a.transact(other)
    if (t3.kind !== 'ok') {
      unknownBecause(log, 'mapping test III', t3)
      return 'endpoint-dependent'
    }
    return same(t3.mapped, t2.mapped) ? 'address-dependent' : 'address-and-port-dependent'
  }

  /** Step 3. */
  private async filtering(
    b: Prober,
    server: UdpEndpoint,
    other: UdpEndpoint,
    log: (m: string) => void,
  ): Promise<FilteringBehaviour> {
    const canChangeIp = other.address !== server.address
    const canChangePort = other.port !== server.port
    const portOnly = {address: server.address, port: other.port}
    const t2 = canChangeIp
      ? b.transact(
          server,
          {changeIp: true, changePort: canChangePort},
          {address: other.address, port: canChangePort ? other.port : server.port},
        )
      : undefined
    const t3 = canChangePort ? b.transact(server, {changeIp: false, changePort: true}, portOnly) : undefined
    const r2 = await t2
    if (r2?.kind === 'ok') return 'endpoint-independent'
    const r3 = await t3
    // A test cut short by the deadline proves nothing (its answer may have been on its way).
    if (r2?.kind === 'aborted') return unknownBecause(log, 'filtering test II', r2)
    if (r3?.kind === 'aborted') return unknownBecause(log, 'filtering test III', r3)
    if (r2?.kind === 'unsupported') return unknownBecause(log, 'filtering test II', r2)
    if (r3?.kind === 'unsupported') return unknownBecause(log, 'filtering test III', r3)
    if (r3?.kind === 'ok') return r2 === undefined ? 'unknown' : 'address-dependent'
    // No answer to either (or only test II existed and got none): the filter wants address and port,
    // or, with an alternate address only, at least the address.
    return canChangePort ? 'address-and-port-dependent' : 'address-dependent'
  }

  private isOwnEndpoint(mapped: UdpEndpoint, local: UdpEndpoint): boolean {
    if (mapped.port !== local.port) return false
    if (local.address !== '0.0.0.0' && local.address !== '::') return mapped.address === local.address
    const own = this.opts.localAddresses?.() ?? interfaceAddresses()
    return own.some((a) => canonicalIp(a) === mapped.address)
  }

  private report(r: {
    started: number
    server: UdpEndpoint
    udp: boolean
    local: UdpEndpoint
    mapped?: UdpEndpoint
    other?: UdpEndpoint | undefined
    latencyMs?: number
    mapping?: MappingBehaviour
    filtering?: FilteringBehaviour
    behindNat?: boolean
  }): NetReport {
    const mapping = r.mapping ?? 'unknown'
    const filtering = r.filtering ?? 'unknown'
    const behindNat = r.behindNat ?? null
    return {
      udp: r.udp,
      publicEndpoint: r.mapped ?? null,
      localEndpoint: r.local,
      behindNat,
      mapping,
      filtering,
      portPreserved: r.mapped === undefined ? null : r.mapped.port === r.local.port,
      latencyMs: r.latencyMs ?? null,
      server: r.server,
      otherAddress: r.other ?? null,
      ...directOutlook({udp: r.udp, behindNat, mapping, filtering}),
      durationMs: this.clock.now() - r.started,
    }
  }
}

/** OTHER-ADDRESS comes from the network: use it only when it is a plausible alternate of the server. */
function isUsableOther(other: UdpEndpoint, server: UdpEndpoint): boolean {
  if (other.port === 0) return false
  if (other.address.includes(':') !== server.address.includes(':')) return false
  if (other.address === '0.0.0.0' || other.address === '::') return false
  return other.address !== server.address || other.port !== server.port
}

function unknownBecause(log: (m: string) => void, test: string, t: TxResult): 'unknown' {
  log(`netcheck: ${test}: ${t.kind === 'unsupported' ? t.why : t.kind}`)
  return 'unknown'
}

const endpoint = (a: StunAddress): UdpEndpoint => ({address: a.address, port: a.port})
const same = (x: UdpEndpoint, y: UdpEndpoint): boolean => x.address === y.address && x.port === y.port
const fmt = (e: UdpEndpoint): string =>
  e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`

function interfaceAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .flatMap((i) => (i === undefined ? [] : [i.address.split('%')[0]!]))
}
