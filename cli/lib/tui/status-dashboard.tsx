/**
 * `mesh status` on a terminal: a live view of meshd's status. A renderer only: the command owns
 * the GET /v1/watch stream and re-renders this with each new status; the component keeps just
 * what is the viewer's own (the selected peer, whether its details are open).
 *
 * Keys: ↑/↓ (or k/j) move the selection, Enter opens or closes the selected peer's details,
 * q (or Esc, Ctrl-C) quits. The peer list scrolls to keep the selection on screen.
 */
import {Box, Text, useInput} from 'ink'
import {useState} from 'react'
import type {NetworkStatus, PeerStatus, Status} from '../../../shared/protocol/local-api.js'
import {terminalText} from '../../../shared/text.js'
import {formatAgo, formatBytes, formatLatency, keyWarningText} from '../render/status.js'

export interface StatusDashboardProps {
  /** Undefined until the first status arrives. */
  status: Status | undefined
  /** Why the stream is not live (meshd went away, say); shown above the last status. */
  problem?: string | undefined
  /** Terminal size. */
  width: number
  height: number
  /** For handshake ages; Date.now() by default. */
  now?: number
  /** Whether keys are read (false when stdin is not a terminal). */
  interactive?: boolean
  onQuit: () => void
}

/** Fits `s` (made safe for a terminal) into exactly `w` columns. */
export function fit(s: string, w: number, align: 'left' | 'right' = 'left'): string {
  if (w <= 0) return ''
  const chars = [...terminalText(s)]
  const text = chars.length > w ? chars.slice(0, Math.max(0, w - 1)).join('') + '…' : chars.join('')
  const fill = ' '.repeat(w - [...text].length)
  return align === 'right' ? fill + text : text + fill
}

/** "512B/s", "2.0K/s", "12.5M/s": compact, for a table column. */
export function formatRate(bytesPerSecond: number): string {
  const units = ['B', 'K', 'M', 'G']
  let v = Math.max(0, bytesPerSecond)
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${Math.round(v)}B/s` : `${v.toFixed(1)}${units[i]}/s`
}

export function pathText(p: PeerStatus): string {
  if (p.path === 'direct') return p.endpoint ? `direct ${p.endpoint}` : 'direct'
  return p.path
}

interface Columns {
  name: number
  address: number
  path: number
  latency: number
  handshake: number
  rx: number
  tx: number
}

/** Column widths for a terminal `width` wide: name and path share what the fixed ones leave. */
export function columnsFor(width: number): Columns {
  const fixed = {address: 13, latency: 7, handshake: 9, rx: 9, tx: 9}
  // Selection marker (2), online dot (2), and one space between columns (6).
  const rest = Math.max(16, width - 2 - 2 - 6 - Object.values(fixed).reduce((a, b) => a + b, 0))
  const name = Math.max(6, Math.floor(rest * 0.35))
  return {...fixed, name, path: Math.max(6, rest - name)}
}

function headerLine(c: Columns): string {
  return [
    '    ' + fit('PEER', c.name),
    fit('ADDRESS', c.address),
    fit('PATH', c.path),
    fit('LATENCY', c.latency, 'right'),
    fit('HANDSHAKE', c.handshake, 'right'),
    fit('RX', c.rx, 'right'),
    fit('TX', c.tx, 'right'),
  ].join(' ')
}

function peerLine(p: PeerStatus, c: Columns, now: number): string {
  return [
    fit(p.name, c.name),
    fit(p.address, c.address),
    fit(pathText(p), c.path),
    fit(formatLatency(p.latencyMs), c.latency, 'right'),
    fit(p.lastHandshake ? formatAgo(p.lastHandshake, now) : 'never', c.handshake, 'right'),
    fit(formatRate(p.rxBytesPerSecond), c.rx, 'right'),
    fit(formatRate(p.txBytesPerSecond), c.tx, 'right'),
  ].join(' ')
}

function networkLine(n: NetworkStatus, width: number): string {
  const ctl = n.connected ? 'controller connected' : n.up ? 'controller not connected' : 'down'
  const problem = n.lastError ? ` · ${n.lastError}` : ''
  const key = keyWarningText(n, Date.now())
  return fit(`${n.name}  ${n.address}  ${n.interface}  ${ctl}${problem}${key ? ` · ${key}` : ''}`, width)
}

type Row = {kind: 'network'; network: NetworkStatus} | {kind: 'peer'; peer: PeerStatus; index: number}

function rowsOf(st: Status): {rows: Row[]; peers: PeerStatus[]} {
  const rows: Row[] = []
  const peers: PeerStatus[] = []
  for (const n of st.networks) {
    rows.push({kind: 'network', network: n})
    for (const p of n.peers) {
      rows.push({kind: 'peer', peer: p, index: peers.length})
      peers.push(p)
    }
  }
  return {rows, peers}
}

function PeerDetails({peer, now, width}: {peer: PeerStatus; now: number; width: number}) {
  const fields: [string, string][] = [
    ['peer', peer.name],
    ['node id', peer.id],
    ['address', peer.address],
    ['public key', peer.publicKey],
    ['path', pathText(peer)],
    ['endpoint', peer.endpoint ?? '-'],
    ['latency', formatLatency(peer.latencyMs)],
    [
      'handshake',
      peer.lastHandshake ? `${formatAgo(peer.lastHandshake, now)} (${peer.lastHandshake})` : 'never',
    ],
    ['received', `${formatBytes(peer.rxBytes)} (${formatBytes(Math.round(peer.rxBytesPerSecond))}/s)`],
    ['sent', `${formatBytes(peer.txBytes)} (${formatBytes(Math.round(peer.txBytesPerSecond))}/s)`],
    ['state', peer.online ? 'online' : 'offline'],
  ]
  return (
    <Box flexDirection="column" borderStyle="single" paddingX={1} width={Math.min(width, 100)}>
      {fields.map(([k, v]) => (
        <Text key={k}>
          <Text bold>{fit(k, 11)}</Text>
          {fit(v, Math.max(10, Math.min(width, 100) - 16))}
        </Text>
      ))}
    </Box>
  )
}

export function StatusDashboard(props: StatusDashboardProps) {
  const {status, width, height, onQuit} = props
  const now = props.now ?? Date.now()
  const [selected, setSelected] = useState(0)
  const [details, setDetails] = useState(false)
  const {rows, peers} = status ? rowsOf(status) : {rows: [], peers: []}
  const sel = Math.min(selected, Math.max(0, peers.length - 1))

  useInput(
    (input, key) => {
      if (input === 'q' || key.escape || (key.ctrl && input === 'c')) return onQuit()
      if (key.downArrow || input === 'j') setSelected(Math.min(sel + 1, Math.max(0, peers.length - 1)))
      else if (key.upArrow || input === 'k') setSelected(Math.max(0, sel - 1))
      else if (key.return) setDetails((d) => !d)
    },
    {isActive: props.interactive !== false},
  )

  const c = columnsFor(width)
  const detailsShown = details && peers[sel] !== undefined
  // Title, column header, footer and the two "more" lines; details take 13 lines.
  const room = Math.max(3, height - 5 - (detailsShown ? 13 : 0) - (props.problem ? 1 : 0))
  const selRow = rows.findIndex((r) => r.kind === 'peer' && r.index === sel)
  const start = Math.max(0, Math.min(selRow - Math.floor(room / 2), rows.length - room))
  const visible = rows.slice(start, start + room)
  const above = start
  const below = Math.max(0, rows.length - start - room)

  return (
    <Box flexDirection="column" width={width}>
      <Text bold>
        {fit(
          status
            ? `mesh status · ${status.networks.length} network${status.networks.length === 1 ? '' : 's'} · ${peers.filter((p) => p.online).length}/${peers.length} peers online`
            : 'mesh status · waiting for meshd…',
          width,
        )}
      </Text>
      {props.problem ? <Text color="red">{fit(props.problem, width)}</Text> : null}
      {status && status.networks.length === 0 ? (
        <Text>{fit('meshd has joined no network. Join one with `mesh join <invite>`.', width)}</Text>
      ) : null}
      {status && status.networks.length > 0 ? <Text dimColor>{fit(headerLine(c), width)}</Text> : null}
      {above > 0 ? <Text dimColor>{fit(`  ↑ ${above} more`, width)}</Text> : null}
      {visible.map((r) =>
        r.kind === 'network' ? (
          <Text key={`n:${r.network.id}`} bold color={r.network.connected ? 'green' : 'yellow'}>
            {networkLine(r.network, width)}
          </Text>
        ) : (
          <Text
            key={`p:${r.peer.id}:${r.index}`}
            inverse={r.index === sel}
            dimColor={!r.peer.online && r.index !== sel}
          >
            {fit(
              `${r.index === sel ? '›' : ' '} ${r.peer.online ? '●' : '○'} ${peerLine(r.peer, c, now)}`,
              width,
            )}
          </Text>
        ),
      )}
      {below > 0 ? <Text dimColor>{fit(`  ↓ ${below} more`, width)}</Text> : null}
      {detailsShown ? <PeerDetails peer={peers[sel]!} now={now} width={width} /> : null}
      <Text dimColor>
        {fit(
          props.interactive === false ? 'live · Ctrl-C quits' : '↑↓ select · Enter details · q quit',
          width,
        )}
      </Text>
    </Box>
  )
}
