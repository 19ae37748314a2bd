/**
 * The graph `mesh topology` draws: one network's nodes and the path between each pair that has
 * one (direct or relay), built from the controller's node list and connections, then kept
 * current by the admin event stream (node_* and connection_changed events).
 */
import type {Connection, Node, Path} from '../../../shared/protocol/control-api.js'
import type {AdminEvent} from '../../../shared/protocol/netmap.js'

export interface TopologyNode {
  readonly id: string
  readonly name: string
  readonly address: string
  readonly online: boolean
  readonly status: Node['status']
}

export interface TopologyEdge {
  /** a < b (node ids). */
  readonly a: string
  readonly b: string
  readonly path: Exclude<Path, 'none'>
  readonly latencyMs: number | null
}

export interface Topology {
  readonly networkId: string
  readonly nodes: readonly TopologyNode[]
  readonly edges: readonly TopologyEdge[]
}

const nodeOf = (n: Node): TopologyNode => ({
  id: n.id,
  name: n.name,
  address: n.address,
  online: n.online,
  status: n.status,
})

const byName = (a: TopologyNode, b: TopologyNode): number =>
  a.name.localeCompare(b.name, 'en', {numeric: true}) || a.id.localeCompare(b.id)
const pairKey = (a: string, b: string): string => (a < b ? `${a}\n${b}` : `${b}\n${a}`)

export function buildTopology(
  networkId: string,
  nodes: readonly Node[],
  connections: readonly Connection[],
): Topology {
  const own = nodes.filter((n) => n.networkId === networkId).map(nodeOf)
  const ids = new Set(own.map((n) => n.id))
  const edges = new Map<string, TopologyEdge>()
  for (const c of connections) {
    if (!ids.has(c.a.id) || !ids.has(c.b.id) || c.a.id === c.b.id) continue
    const [a, b] = c.a.id < c.b.id ? [c.a.id, c.b.id] : [c.b.id, c.a.id]
    edges.set(pairKey(a, b), {a, b, path: c.path, latencyMs: c.latencyMs})
  }
  return {networkId, nodes: own.sort(byName), edges: [...edges.values()]}
}

/** The topology after one admin event (events of other networks change nothing). */
export function applyAdminEvent(t: Topology, ev: AdminEvent): Topology {
  if (ev.networkId !== t.networkId) return t
  if (ev.type === 'connection_changed') {
    if (ev.a.id === ev.b.id) return t
    const key = pairKey(ev.a.id, ev.b.id)
    const edges = t.edges.filter((e) => pairKey(e.a, e.b) !== key)
    const known = new Set(t.nodes.map((n) => n.id))
    if (ev.to !== 'none' && known.has(ev.a.id) && known.has(ev.b.id)) {
      const [a, b] = ev.a.id < ev.b.id ? [ev.a.id, ev.b.id] : [ev.b.id, ev.a.id]
      edges.push({a, b, path: ev.to, latencyMs: ev.latencyMs})
    }
    return {...t, edges}
  }
  const node = nodeOf(ev.node)
  if (ev.type === 'node_removed') {
    return {
      ...t,
      nodes: t.nodes.filter((n) => n.id !== node.id),
      edges: t.edges.filter((e) => e.a !== node.id && e.b !== node.id),
    }
  }
  const rest = t.nodes.filter((n) => n.id !== node.id)
  const updated =
    ev.type === 'node_online' || ev.type === 'node_offline'
      ? {...node, online: ev.type === 'node_online'}
      : node
  // Paths stay as the controller last recorded them; connection_changed says when they end.
  return {...t, nodes: [...rest, updated].sort(byName)}
}

export interface NodeSummary {
  readonly node: TopologyNode
  /** Peer names by path. */
  readonly direct: readonly TopologyNode[]
  readonly relay: readonly TopologyNode[]
}

/** Each node with the peers it reaches directly and through the relay (names sorted). */
export function summarise(t: Topology): NodeSummary[] {
  const byId = new Map(t.nodes.map((n) => [n.id, n]))
  const direct = new Map<string, TopologyNode[]>()
  const relay = new Map<string, TopologyNode[]>()
  for (const e of t.edges) {
    const a = byId.get(e.a)
    const b = byId.get(e.b)
    if (!a || !b) continue
    const into = e.path === 'direct' ? direct : relay
    into.set(a.id, [...(into.get(a.id) ?? []), b])
    into.set(b.id, [...(into.get(b.id) ?? []), a])
  }
  return t.nodes.map((node) => ({
    node,
    direct: (direct.get(node.id) ?? []).sort(byName),
    relay: (relay.get(node.id) ?? []).sort(byName),
  }))
}
