// Plain-text rendering of meshd's status for people; `mesh status --json` prints the Status object.
import type {NetworkStatus, PeerStatus, Status} from '../../../shared/protocol/local-api.js'
import {KEY_EXPIRY_WARNING_MS} from '../../../shared/protocol/control-api.js'
import {keyExpiryText} from './resources.js'
import {renderFields, renderTable, stdoutColor} from './table.js'

/** 1.5 KiB, 2.0 MiB: enough precision to see traffic move. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`
}

/** "12s ago", "5m ago", "3h ago", "never": how long since the last handshake. */
export function formatAgo(iso: string | null, now = Date.now()): string {
  if (!iso) return 'never'
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000))
  if (s < 120) return `${s}s ago`
  if (s < 7200) return `${Math.round(s / 60)}m ago`
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`
  return `${Math.round(s / 86_400)}d ago`
}

/** "0.4 ms", "12 ms", "-" when not measured. */
export function formatLatency(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-'
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`
}

export function peersTable(peers: readonly PeerStatus[], now = Date.now()): string {
  return renderTable(
    peers,
    [
      {header: 'PEER', get: (p) => p.name},
      {header: 'ADDRESS', get: (p) => p.address},
      {header: 'PATH', get: (p) => p.path},
      {header: 'ENDPOINT', get: (p) => p.endpoint},
      {header: 'LATENCY', get: (p) => formatLatency(p.latencyMs), align: 'right'},
      {header: 'HANDSHAKE', get: (p) => formatAgo(p.lastHandshake, now)},
      {header: 'RX', get: (p) => formatBytes(p.rxBytes), align: 'right'},
      {header: 'TX', get: (p) => formatBytes(p.txBytes), align: 'right'},
      {header: 'STATE', get: (p) => (p.online ? 'online' : 'offline')},
    ],
    {color: stdoutColor(), empty: '  (no peers)'},
  )
}

/**
 * The warning when the node's key expires within the warning window (or has expired), saying
 * what to do; undefined otherwise. `mesh status` prints it as a `key` line, the live dashboard
 * on the network's line.
 */
export function keyWarningText(n: NetworkStatus, now: number): string | undefined {
  const exp = n.keyExpiresAt
  if (exp === undefined || exp === null) return undefined
  const left = new Date(exp).getTime() - now
  if (!(left <= KEY_EXPIRY_WARNING_MS)) return undefined
  const extend = `\`mesh node extend ${n.nodeName} --network ${n.name}\``
  if (left <= 0) return `WARNING: this node's key expired; an admin can renew it with ${extend}`
  const when = keyExpiryText(exp, new Date(now))
  return `WARNING: this node's key expires ${when}; run \`mesh rotate-key ${n.name}\` (or an admin: ${extend})`
}

const keyLine = (n: NetworkStatus, now: number): [string, string][] => {
  const warning = keyWarningText(n, now)
  return warning === undefined ? [] : [['key', warning]]
}

export function networkBlock(n: NetworkStatus, now = Date.now()): string {
  const fields = renderFields([
    ['network', `${n.name} (${n.cidr})`],
    ['node', `${n.nodeName}${n.nodeStatus === 'active' ? '' : ` [${n.nodeStatus}]`}`],
    ['address', n.address],
    ['interface', `${n.interface} (${n.up ? 'up' : 'down'}, port ${n.listenPort})`],
    ['controller', `${n.controller} (${n.connected ? 'connected' : n.up ? 'not connected' : 'idle'})`],
    ...(n.lastError ? ([['problem', n.lastError]] as [string, string][]) : []),
    ...keyLine(n, now),
  ])
  return `${fields}\n\n${peersTable(n.peers, now)}`
}

export function statusText(st: Status, now = Date.now()): string {
  if (st.networks.length === 0)
    return `meshd is running (WireGuard: ${st.backend}) and has joined no network.\nJoin one with \`mesh join <invite>\`.`
  return [
    `meshd pid ${st.pid}, WireGuard backend: ${st.backend}`,
    ...st.networks.map((n) => networkBlock(n, now)),
  ].join('\n\n')
}
