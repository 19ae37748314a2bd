/**
 * The relay mesh: how two nodes homed on different relays reach each other.
 *
 * Choice: relay-to-relay forwarding (the way Tailscale's DERP servers of one region mesh), not the
 * sender connecting to the receiver's home relay. Why:
 * - A node keeps ONE relay socket, to the home relay it chose by latency; it never has to learn
 *   where each of its peers is homed. Nothing about home relays goes into the netmap, so a node
 *   changing its home relay costs no delta to its peers and no write on the controller (a field
 *   per peer would cost O(peers) bytes on every move, and state the controller replicas would
 *   have to share).
 * - Relays stay independent of the controller's data path: which node is where is learnt from
 *   the relays themselves (presence on the mesh links), at once, not at the next netmap.
 * - It costs one more hop for a cross-relay packet and a link per pair of relays, which is fine
 *   for the tens of relays a deployment has.
 *
 * Links. Each pair of relays holds one WebSocket (RELAY_MESH_WS_PATH), used both ways: the
 * controller's built-in relay dials every stand-alone relay (it serves no mesh path itself), and
 * of two stand-alone relays the one whose URL sorts first dials the other. The dialer presents
 * the mesh token the controller hands out in heartbeat answers; an accepting relay takes the
 * tokens it was given recently. Both sides send `hello` (their URL and every node connected
 * to them) and then `add`/`del` as nodes come and go; binary messages are forwarded packets
 * (shared/relay/control.ts). Presence is kept per link: a `del` only removes what that same link
 * added, so a node moving from relay A to relay B is never lost to a late `del` from A.
 *
 * A packet arrives at relay A for a node not connected to A: A looks the (network, node) up in
 * presence and sends it on the link to the relay that has it; that relay delivers it locally
 * only (RelayServer.deliver), never forwards it again, so there are no loops. Isolation holds
 * because presence is keyed by network and node: a node can only reach ids of its own network.
 */
import type {IncomingMessage} from 'node:http'
import type {Duplex} from 'node:stream'
import WebSocket, {WebSocketServer, type RawData} from 'ws'
import {
  decodeMeshPacket,
  encodeMeshPacket,
  RELAY_MESH_WS_PATH,
  RelayMeshPresenceSchema,
  type RelayMeshPresence,
  type RelayNodeRef,
} from '../../shared/relay/control.js'
import {RELAY_MAX_BATCH_PACKETS, RELAY_MAX_PAYLOAD} from '../../shared/relay/frame.js'
import {wsUrl} from '../../shared/net/ws-url.js'
import type {RelayIdentity, RelayLog, RelayServer} from './server.js'

export interface RelayMeshOptions {
  /** This relay's own URL (as others dial it); undefined for the controller's built-in relay. */
  readonly selfUrl: string | undefined
  /** Mesh tokens an incoming link may present (the newest first). */
  readonly acceptTokens: () => readonly string[]
  readonly log?: RelayLog
  readonly maxPayload?: number
  /** A link's send backlog above which forwarded packets are dropped. 4 MiB by default. */
  readonly maxBacklogBytes?: number
}

interface Link {
  readonly ws: WebSocket
  /** The remote relay's URL (from its hello, or the one dialed). */
  url: string | undefined
  /** Presence keys this link added. */
  readonly nodes: Set<string>
}

const key = (networkId: string, nodeId: string): string => `${networkId}\0${nodeId}`

const noLog: RelayLog = {warn: () => undefined, error: () => undefined}

export class RelayMesh {
  private relay: RelayServer | undefined
  private readonly wss: WebSocketServer
  private readonly links = new Set<Link>()
  /** Links this relay dialed, by remote URL. */
  private readonly dialed = new Map<string, Link>()
  /** Where a node of another relay is: (network, node) -> the link of its relay. */
  private readonly presence = new Map<string, Link>()
  private readonly log: RelayLog
  private readonly maxPayload: number
  private readonly maxBacklog: number
  private closed = false
  private readonly presenceListeners = new Set<() => void>()
  private detachRelay: () => void = () => undefined
  private selfUrl: string | undefined

  constructor(private readonly opts: RelayMeshOptions) {
    this.selfUrl = opts.selfUrl
    this.log = opts.log ?? noLog
    this.maxPayload = opts.maxPayload ?? RELAY_MAX_PAYLOAD
    this.maxBacklog = opts.maxBacklogBytes ?? 4 * 1024 * 1024
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: 64 * 1024 * 1024,
    })
  }

  /** Binds the mesh to the relay it serves: its presence goes out, forwarded packets come in. */
  attach(relay: RelayServer): void {
    this.relay = relay
    const onConnect = (id: RelayIdentity) => this.broadcast({type: 'add', node: ref(id)})
    const onDisconnect = (id: RelayIdentity) => this.broadcast({type: 'del', node: ref(id)})
    relay.on('connect', onConnect)
    relay.on('disconnect', onDisconnect)
    this.detachRelay = () => {
      relay.off('connect', onConnect)
      relay.off('disconnect', onDisconnect)
    }
  }

  /** For RelayServerOptions.forward: sends packets to the relay that has their destination. */
  readonly forward = (from: RelayIdentity, dstNodeId: string, payloads: Buffer[]): boolean => {
    const link = this.presence.get(key(from.networkId, dstNodeId))
    if (!link || link.ws.readyState !== WebSocket.OPEN || link.ws.bufferedAmount > this.maxBacklog)
      return false
    link.ws.send(encodeMeshPacket({networkId: from.networkId, src: from.nodeId, dst: dstNodeId, payloads}))
    return true
  }

  /** This relay's URL, once it is known (after listening on port 0). */
  setSelfUrl(url: string): void {
    this.selfUrl = url
  }

  /** How many nodes of other relays this relay knows of, and over how many links. */
  get stats(): {links: number; remoteNodes: number} {
    return {links: this.links.size, remoteNodes: this.presence.size}
  }

  /** Runs `fn` after each presence message from another relay is applied; returns the unsubscribe. */
  onPresenceChange(fn: () => void): () => void {
    this.presenceListeners.add(fn)
    return () => this.presenceListeners.delete(fn)
  }

  /** Whether a node of a network is connected to another relay of the mesh. */
  knows(networkId: string, nodeId: string): boolean {
    return this.presence.has(key(networkId, nodeId))
  }

  /**
   * The live relays as the controller lists them: dials those this relay must dial and has no
   * open link to, and closes dialed links to relays no longer listed.
   */
  setPeers(peers: readonly {url: string}[], token: string): void {
    if (this.closed) return
    const want = new Set<string>()
    for (const p of peers) {
      if (p.url === this.selfUrl) continue
      // The built-in relay (no URL) dials everyone; of two stand-alone relays, the first URL.
      if (this.selfUrl !== undefined && !(this.selfUrl < p.url)) continue
      want.add(p.url)
    }
    for (const [url, link] of this.dialed)
      if (!want.has(url)) {
        this.dialed.delete(url)
        link.ws.close(1000, 'relay no longer listed')
      }
    for (const url of want) if (!this.dialed.has(url)) this.dial(url, token)
  }

  private dial(url: string, token: string): void {
    let target: string
    try {
      target = wsUrl(url, RELAY_MESH_WS_PATH).toString()
    } catch {
      return this.log.warn({url}, 'relay mesh: bad relay URL')
    }
    const ws = new WebSocket(target, {
      headers: {authorization: `Bearer ${token}`},
      perMessageDeflate: false,
      handshakeTimeout: 5_000,
      followRedirects: false,
      maxPayload: 64 * 1024 * 1024,
    })
    const link: Link = {ws, url, nodes: new Set()}
    this.dialed.set(url, link)
    ws.on('error', (err) => this.log.warn({url, err: String(err)}, 'relay mesh link failed'))
    ws.on('close', () => {
      if (this.dialed.get(url) === link) this.dialed.delete(url)
    })
    ws.on('open', () => this.open(link))
  }

  /** Takes over an upgrade on RELAY_MESH_WS_PATH: another relay dialing this one. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy())
    const token = /^Bearer (\S{1,300})$/i.exec(req.headers.authorization ?? '')?.[1]
    const ok = token !== undefined && this.opts.acceptTokens().includes(token)
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => ws.terminate())
      if (this.closed) return ws.close(1001, 'shutting down')
      if (!ok) return ws.close(4401, 'MESH_TOKEN_INVALID')
      this.open({ws, url: undefined, nodes: new Set()})
    })
  }

  private open(link: Link): void {
    const {ws} = link
    if (this.closed) return void ws.close(1001, 'shutting down')
    this.links.add(link)
    ws.binaryType = 'nodebuffer'
    ws.on('close', () => this.forget(link))
    ws.on('message', (data: RawData, isBinary) => this.onMessage(link, data as Buffer, isBinary))
    const nodes = (this.relay?.connectedNodes() ?? []).map(ref)
    ws.send(JSON.stringify({type: 'hello', url: this.selfUrl ?? '', nodes} satisfies RelayMeshPresence))
  }

  private onMessage(link: Link, data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      let p: ReturnType<typeof decodeMeshPacket>
      try {
        p = decodeMeshPacket(data, {maxPayload: this.maxPayload, maxPackets: RELAY_MAX_BATCH_PACKETS})
      } catch {
        return this.log.warn({url: link.url}, 'relay mesh: malformed packet dropped')
      }
      this.relay?.deliver(p.networkId, p.src, p.dst, p.payloads)
      return
    }
    let msg: RelayMeshPresence
    try {
      msg = RelayMeshPresenceSchema.parse(JSON.parse(data.toString('utf8')))
    } catch {
      this.log.warn({url: link.url}, 'relay mesh: malformed presence; link closed')
      return void link.ws.close(4400, 'bad presence')
    }
    if (msg.type === 'hello') {
      if (msg.url !== '') link.url = msg.url
      for (const k of link.nodes) if (this.presence.get(k) === link) this.presence.delete(k)
      link.nodes.clear()
      for (const n of msg.nodes) this.add(link, n)
    } else if (msg.type === 'add') this.add(link, msg.node)
    else {
      const k = key(msg.node.networkId, msg.node.nodeId)
      link.nodes.delete(k)
      if (this.presence.get(k) === link) this.presence.delete(k)
    }
    for (const fn of this.presenceListeners) fn()
  }

  private add(link: Link, n: RelayNodeRef): void {
    const k = key(n.networkId, n.nodeId)
    link.nodes.add(k)
    this.presence.set(k, link)
    // Packets the relay held for this node while it was nowhere go to its relay now.
    this.relay?.releaseHeld(n.networkId, n.nodeId)
  }

  private forget(link: Link): void {
    if (!this.links.delete(link)) return
    for (const k of link.nodes) if (this.presence.get(k) === link) this.presence.delete(k)
    link.nodes.clear()
  }

  private broadcast(msg: RelayMeshPresence): void {
    const text = JSON.stringify(msg)
    for (const link of this.links) if (link.ws.readyState === WebSocket.OPEN) link.ws.send(text)
  }

  /** Closes every link. */
  async close(): Promise<void> {
    this.closed = true
    this.detachRelay()
    const closing = [...this.links, ...this.dialed.values()].map(
      (link) =>
        new Promise<void>((resolve) => {
          if (link.ws.readyState === WebSocket.CLOSED) return resolve()
          const t = setTimeout(() => {
            link.ws.terminate()
            resolve()
          }, 2000)
          t.unref()
          link.ws.once('close', () => {
            clearTimeout(t)
            resolve()
          })
          if (link.ws.readyState === WebSocket.CONNECTING) link.ws.terminate()
          else link.ws.close(1001, 'shutting down')
        }),
    )
    this.dialed.clear()
    await Promise.all(closing)
    this.wss.close()
  }
}

const ref = (id: RelayIdentity): RelayNodeRef => ({nodeId: id.nodeId, networkId: id.networkId})
