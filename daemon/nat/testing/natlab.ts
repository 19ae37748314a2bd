/**
 * NatLab: an in-memory packet network with NAT routers that behave as RFC 4787 describes, for
 * unit tests of NAT traversal (netcheck now, hole punching later) without namespaces or root
 * (after tailscale's tstest/natlab). It is not a faithful Linux model: the namespace lab
 * (`mesh lab up --nat`) stays the ground truth.
 *
 * Model: hosts on "the internet" own public addresses; a Nat owns one public address and a LAN of
 * hosts with private addresses. A packet from a LAN host to anything outside its LAN is translated
 * by its NAT (a mapping per internal endpoint, per destination address, or per destination address
 * and port), then routed: to a public host, or into another NAT (or the same one: hairpinning),
 * whose filter decides whether it gets in. Delivery is a microtask, in send order; time (mapping
 * expiry) comes from the injected Clock. Test-only.
 */

import {systemClock, type Clock} from '../../../shared/clock.js'
import {canonicalIp} from '../../../shared/net/ip-bytes.js'
import type {UdpBind, UdpEndpoint, UdpSocket} from '../../../shared/net/udp.js'

/** RFC 4787 §4.1 (mapping) and §5 (filtering) behaviours. */
export type Behaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent'

export interface NatConfig {
  readonly mapping: Behaviour
  readonly filtering: Behaviour
  /** Keep the internal port as the external one when it is free (RFC 4787 §4.2.1); default true. */
  readonly portPreservation?: boolean
  /** A mapping unused for this long is gone (RFC 4787 REQ-5 asks ≥ 2 min); default 120 s. */
  readonly mappingTimeoutMs?: number
  /** Drop all outbound UDP (a network where only TCP gets out). */
  readonly blockUdp?: boolean
}

/** The NAT kinds of the lab, by their common names. */
export const NAT_KINDS = {
  /** Full cone: endpoint-independent mapping and filtering. */
  cone: {mapping: 'endpoint-independent', filtering: 'endpoint-independent'},
  /** (Address-)restricted cone: endpoint-independent mapping, address-dependent filtering. */
  'address-restricted': {mapping: 'endpoint-independent', filtering: 'address-dependent'},
  /** Port-restricted cone: Linux masquerade, the lab's "restricted". */
  'port-restricted': {mapping: 'endpoint-independent', filtering: 'address-and-port-dependent'},
  /** Symmetric: a new random port per destination (masquerade fully-random). */
  symmetric: {
    mapping: 'address-and-port-dependent',
    filtering: 'address-and-port-dependent',
    portPreservation: false,
  },
  'udp-blocked': {mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', blockUdp: true},
} as const satisfies Record<string, NatConfig>

export type DropReason = 'filtered' | 'no-route' | 'no-listener' | 'udp-blocked' | 'test-rule'

export interface Packet {
  readonly from: UdpEndpoint
  readonly to: UdpEndpoint
  readonly data: Buffer
}

interface Mapping {
  readonly internal: UdpEndpoint
  readonly externalPort: number
  /** Destinations sent to: "ip" (address-dependent filter) and "ip:port" (…and port). */
  readonly permitted: Set<string>
  lastUsed: number
}

export class Nat {
  private readonly byKey = new Map<string, Mapping>()
  private readonly byPort = new Map<number, Mapping>()
  private nextPort: number
  readonly lan = new Set<string>()

  constructor(
    readonly publicIp: string,
    readonly config: NatConfig,
    private readonly lab: NatLab,
    firstPort: number,
  ) {
    this.nextPort = firstPort
  }

  /** Adds a host with a private address behind this NAT. */
  host(privateIp: string): Host {
    const h = this.lab.addHost([privateIp], this)
    this.lan.add(h.ips[0]!)
    return h
  }

  /** Live mappings (after expiry). */
  mappings(): number {
    this.expire()
    return this.byPort.size
  }

  /** Outbound: returns the translated source, creating a mapping when needed. */
  translateOut(from: UdpEndpoint, to: UdpEndpoint): UdpEndpoint {
    this.expire()
    const dest =
      this.config.mapping === 'endpoint-independent'
        ? ''
        : this.config.mapping === 'address-dependent'
          ? to.address
          : key(to)
    const k = `${key(from)}>${dest}`
    let m = this.byKey.get(k)
    if (m === undefined) {
      m = {internal: from, externalPort: this.allocatePort(from.port), permitted: new Set(), lastUsed: 0}
      this.byKey.set(k, m)
      this.byPort.set(m.externalPort, m)
    }
    m.permitted.add(to.address)
    m.permitted.add(key(to))
    m.lastUsed = this.lab.clock.now()
    return {address: this.publicIp, port: m.externalPort}
  }

  /** Inbound to our public address: the internal endpoint, or the reason it is dropped. */
  translateIn(from: UdpEndpoint, port: number): UdpEndpoint | 'filtered' {
    this.expire()
    const m = this.byPort.get(port)
    if (m === undefined) return 'filtered'
    const f = this.config.filtering
    if (f === 'address-dependent' && !m.permitted.has(from.address)) return 'filtered'
    if (f === 'address-and-port-dependent' && !m.permitted.has(key(from))) return 'filtered'
    return m.internal
  }

  private allocatePort(internalPort: number): number {
    if ((this.config.portPreservation ?? true) && !this.byPort.has(internalPort)) return internalPort
    // Bounded: at most 64k ports; a lab never holds that many mappings.
    for (let i = 0; i < 65536; i++) {
      const p = this.nextPort
      // A stride that is not 1 makes "port + 1" guesses fail, as with real random allocation.
      this.nextPort = 1024 + ((this.nextPort - 1024 + 7919) % (65536 - 1024))
      if (!this.byPort.has(p)) return p
    }
    throw new Error('NatLab: NAT out of ports')
  }

  private expire(): void {
    const now = this.lab.clock.now()
    const ttl = this.config.mappingTimeoutMs ?? 120_000
    for (const [k, m] of this.byKey) {
      if (now - m.lastUsed > ttl) {
        this.byKey.delete(k)
        this.byPort.delete(m.externalPort)
      }
    }
  }
}

export class Host {
  private nextEphemeral = 50_000

  constructor(
    readonly ips: readonly string[],
    readonly nat: Nat | undefined,
    private readonly lab: NatLab,
  ) {}

  /** UdpBind for this host: binds one of its addresses (or 0.0.0.0: its first address). */
  readonly bind: UdpBind = async (local) => {
    const address = local.address === '0.0.0.0' ? this.ips[0]! : canonicalIp(local.address)
    if (address === undefined || !this.ips.includes(address)) {
      throw Object.assign(new Error(`EADDRNOTAVAIL ${local.address}`), {code: 'EADDRNOTAVAIL'})
    }
    let port = local.port
    if (port === 0) {
      while (this.lab.isBound({address, port: this.nextEphemeral})) this.nextEphemeral++
      port = this.nextEphemeral++
    }
    return this.lab.openSocket(this, {address, port})
  }
}

export class NatLab {
  readonly clock: Clock
  private readonly sockets = new Map<
    string,
    {host: Host; deliver: (data: Buffer, from: UdpEndpoint) => void}
  >()
  private readonly nats = new Map<string, Nat>()
  private readonly owners = new Map<string, Host>()
  private natCount = 0
  /** For tests: return true to drop a packet (as sent, before translation). */
  dropIf: ((p: Packet) => boolean) | undefined
  readonly stats = {
    delivered: 0,
    dropped: {filtered: 0, 'no-route': 0, 'no-listener': 0, 'udp-blocked': 0, 'test-rule': 0} as Record<
      DropReason,
      number
    >,
  }

  constructor(opts: {clock?: Clock} = {}) {
    this.clock = opts.clock ?? systemClock
  }

  /** A host on the internet with one or more public addresses (no NAT). */
  publicHost(...ips: string[]): Host {
    return this.addHost(ips, undefined)
  }

  /** A NAT router with a public address; add hosts behind it with nat.host(privateIp). */
  nat(publicIp: string, config: NatConfig): Nat {
    const ip = this.claim(publicIp)
    // Each NAT allocates from its own region so that two NATs rarely pick the same numbers.
    const n = new Nat(ip, config, this, 20_000 + 1000 * this.natCount++)
    this.nats.set(ip, n)
    return n
  }

  addHost(ips: string[], nat: Nat | undefined): Host {
    const canonical = ips.map((ip) => this.claim(ip))
    const h = new Host(canonical, nat, this)
    for (const ip of canonical) this.owners.set(ip, h)
    return h
  }

  isBound(e: UdpEndpoint): boolean {
    return this.sockets.has(key(e))
  }

  openSocket(host: Host, local: UdpEndpoint): UdpSocket {
    const k = key(local)
    if (this.sockets.has(k)) throw Object.assign(new Error(`EADDRINUSE ${k}`), {code: 'EADDRINUSE'})
    let handler: (data: Buffer, from: UdpEndpoint) => void = () => {}
    this.sockets.set(k, {host, deliver: (d, f) => handler(d, f)})
    let closed = false
    return {
      local,
      send: (data, to) => {
        if (closed) return
        const copy = Buffer.from(data)
        queueMicrotask(() => this.route(host, {from: local, to, data: copy}))
      },
      onMessage: (h) => {
        handler = h
      },
      close: () => {
        if (closed) return
        closed = true
        this.sockets.delete(k)
      },
    }
  }

  private claim(ip: string): string {
    const c = canonicalIp(ip)
    if (c === undefined) throw new Error(`NatLab: not an IP address: ${ip}`)
    if (this.owners.has(c) || this.nats.has(c)) throw new Error(`NatLab: ${c} is taken`)
    return c
  }

  private drop(reason: DropReason): void {
    this.stats.dropped[reason]++
  }

  private route(sender: Host, p: Packet): void {
    if (this.dropIf?.(p)) return this.drop('test-rule')
    let from = p.from
    const nat = sender.nat
    if (nat !== undefined && !nat.lan.has(p.to.address)) {
      if (nat.config.blockUdp) return this.drop('udp-blocked')
      from = nat.translateOut(p.from, p.to)
    }
    let to = p.to
    const inbound = this.nats.get(to.address)
    if (inbound !== undefined) {
      const internal = inbound.translateIn(from, to.port)
      if (internal === 'filtered') return this.drop('filtered')
      to = internal
    } else if (nat === undefined || !nat.lan.has(to.address)) {
      // Off-LAN destinations must be public hosts: private addresses do not route on the internet.
      const owner = this.owners.get(to.address)
      if (owner === undefined || owner.nat !== undefined) return this.drop('no-route')
    }
    const target = this.sockets.get(key(to))
    if (target === undefined) return this.drop('no-listener')
    this.stats.delivered++
    target.deliver(p.data, from)
  }
}

const key = (e: UdpEndpoint): string => `${e.address}:${e.port}`
