/**
 * `mesh topology`: one network as an adjacency picture for admins. A picture of nodes and lines
 * stops being readable long before 50 nodes on 80×24, so each node gets one line: its online
 * dot, name and address, how many peers it reaches directly (══) and through the relay (┄┄),
 * then those peers by name — direct ones in green, relayed ones in yellow — cut to the width
 * with "+N". Offline nodes are dimmed. A summary line counts nodes and paths; the list pages
 * when it is longer than the terminal (↑/↓ or j/k scroll, PgUp/PgDn or space page, q quits).
 *
 * A renderer only: the command follows the controller and re-renders with each new Topology.
 */
import {Box, Text, useInput} from 'ink'
import {useState} from 'react'
import {summarise, type NodeSummary, type Topology, type TopologyNode} from '../topology/model.js'
import {fit} from './status-dashboard.js'

export interface TopologyViewProps {
  topology: Topology | undefined
  networkName: string
  problem?: string | undefined
  width: number
  height: number
  interactive?: boolean
  onQuit: () => void
}

export const DIRECT = '══'
export const RELAY = '┄┄'

/** The peers part of a node's line: names in order until `width`, then "+N". */
export function peerNames(s: NodeSummary, width: number): {direct: string; relay: string; more: number} {
  const all: [TopologyNode, 'direct' | 'relay'][] = [
    ...s.direct.map((n) => [n, 'direct'] as [TopologyNode, 'direct']),
    ...s.relay.map((n) => [n, 'relay'] as [TopologyNode, 'relay']),
  ]
  const direct: string[] = []
  const relay: string[] = []
  let used = 0
  let shown = 0
  for (const [n, path] of all) {
    const name = fit(n.name, Math.min([...n.name].length, 16)).trimEnd()
    const left = all.length - shown - 1
    const need = [...name].length + 1 + (left > 0 ? 4 : 0)
    if (used + need > width) break
    ;(path === 'direct' ? direct : relay).push(name)
    used += [...name].length + 1
    shown++
  }
  return {direct: direct.join(' '), relay: relay.join(' '), more: all.length - shown}
}

/** Width of the counts part: "══ 12 ┄┄  1  ". */
const COUNTS_WIDTH = 13

function NodeLine({s, width}: {s: NodeSummary; width: number}) {
  const head = `${s.node.online ? '●' : '○'} ${fit(s.node.name, 14)} ${fit(s.node.address, 13)} `
  const names = peerNames(s, Math.max(0, width - [...head].length - COUNTS_WIDTH))
  const green = s.node.online ? 'green' : undefined
  const yellow = s.node.online ? 'yellow' : undefined
  return (
    <Text dimColor={!s.node.online} wrap="truncate">
      {head}
      <Text color={green}>{`${DIRECT}${fit(String(s.direct.length), 3, 'right')}`}</Text>{' '}
      <Text color={yellow}>{`${RELAY}${fit(String(s.relay.length), 3, 'right')}`}</Text>
      {'  '}
      <Text color={green}>{names.direct}</Text>
      {names.direct && names.relay ? ' ' : ''}
      <Text color={yellow}>{names.relay}</Text>
      {names.more > 0 ? ` +${names.more}` : ''}
    </Text>
  )
}

export function TopologyView(props: TopologyViewProps) {
  const {topology, width, height, onQuit} = props
  const [top, setTop] = useState(0)
  const rows = topology ? summarise(topology) : []
  // Summary, legend, footer, problem.
  const room = Math.max(1, height - 3 - (props.problem ? 1 : 0))
  const maxTop = Math.max(0, rows.length - room)
  const first = Math.min(top, maxTop)

  useInput(
    (input, key) => {
      if (input === 'q' || key.escape || (key.ctrl && input === 'c')) return onQuit()
      if (key.downArrow || input === 'j') setTop(Math.min(maxTop, first + 1))
      else if (key.upArrow || input === 'k') setTop(Math.max(0, first - 1))
      else if (key.pageDown || input === ' ') setTop(Math.min(maxTop, first + room))
      else if (key.pageUp) setTop(Math.max(0, first - room))
    },
    {isActive: props.interactive !== false},
  )

  const online = topology?.nodes.filter((n) => n.online).length ?? 0
  const direct = topology?.edges.filter((e) => e.path === 'direct').length ?? 0
  const relayed = (topology?.edges.length ?? 0) - direct
  const pages = Math.max(1, Math.ceil(rows.length / room))
  const page = Math.min(pages, Math.floor(first / room) + 1)
  return (
    <Box flexDirection="column" width={width}>
      <Text bold wrap="truncate">
        {topology
          ? `mesh topology · ${props.networkName} · ${topology.nodes.length} nodes (${online} online) · ${direct} direct, ${relayed} relayed paths`
          : `mesh topology · ${props.networkName} · waiting for the controller…`}
      </Text>
      <Text wrap="truncate">
        <Text color="green">{DIRECT} direct</Text> <Text color="yellow">{RELAY} relay</Text> ● online{' '}
        <Text dimColor>○ offline</Text>
        {rows.length > room ? `   page ${page}/${pages}` : ''}
      </Text>
      {props.problem ? (
        <Text color="red" wrap="truncate">
          {props.problem}
        </Text>
      ) : null}
      {rows.slice(first, first + room).map((s) => (
        <NodeLine key={s.node.id} s={s} width={width} />
      ))}
      <Text dimColor wrap="truncate">
        {props.interactive === false ? 'live · Ctrl-C quits' : '↑↓ scroll · PgUp/PgDn page · q quit'}
      </Text>
    </Box>
  )
}
