import {render} from 'ink-testing-library'
import {describe, expect, it} from 'vitest'
import type {Topology, TopologyEdge, TopologyNode} from '../topology/model.js'
import {press} from './testing/keys.js'
import {TopologyView} from './topology-view.js'

const node = (i: number, online = true): TopologyNode => ({
  id: `nd_${String(i).padStart(3, '0')}`,
  name: `node${String(i).padStart(2, '0')}`,
  address: `10.9.0.${i}`,
  online,
  status: 'active',
})

/** n nodes; every pair of the first `dense` nodes connected, relay when both indexes are odd. */
function topology(n: number, dense: number): Topology {
  const nodes = Array.from({length: n}, (_, i) => node(i + 1, i % 10 !== 9))
  const edges: TopologyEdge[] = []
  for (let i = 0; i < dense; i++)
    for (let j = i + 1; j < dense; j++)
      edges.push({a: nodes[i]!.id, b: nodes[j]!.id, path: i % 2 && j % 2 ? 'relay' : 'direct', latencyMs: 1})
  return {networkId: 'net1', nodes, edges}
}

describe('TopologyView', () => {
  it('stays readable at 50 nodes on 80x24: one line per node within the width, paged, with a legend', async () => {
    const t = topology(50, 12)
    const r = render(
      <TopologyView topology={t} networkName="home" width={80} height={24} onQuit={() => undefined} />,
    )
    const {lastFrame} = r
    const frame = lastFrame()!
    const lines = frame.split('\n')
    expect(lines.length).toBeLessThanOrEqual(24)
    for (const l of lines) expect([...l].length).toBeLessThanOrEqual(80)
    expect(lines[0]).toMatch(/home · 50 nodes \(45 online\) · \d+ direct, \d+ relayed paths/)
    expect(lines[1]).toMatch(/══ direct ┄┄ relay ● online ○ offline\s+page 1\/3/)
    // node01 reaches 11 peers: counts, then names cut with +N.
    expect(frame).toMatch(/● node01\s+10\.9\.0\.1\s+══\s+11 ┄┄\s+0\s+node02 node03 .*\+\d+/)
    expect(frame).toMatch(/● node02\s+10\.9\.0\.2\s+══\s+6 ┄┄\s+5/)
    expect(frame).toMatch(/○ node10\s+10\.9\.0\.10/)
    expect(frame).not.toContain('node30')
    const next = await press(r, ' ')
    expect(next).toContain('page 2/3')
    expect(next).toContain('node30')
  })

  it('follows a new picture and quits on q', async () => {
    let quit: () => void = () => undefined
    const quitted = new Promise<void>((resolve) => (quit = resolve))
    const props = {networkName: 'home', width: 100, height: 24, onQuit: () => quit()}
    const {lastFrame, rerender, stdin} = render(<TopologyView topology={topology(3, 0)} {...props} />)
    expect(lastFrame()).toMatch(/● node01\s+10\.9\.0\.1\s+══\s+0 ┄┄\s+0/)
    rerender(<TopologyView topology={topology(3, 3)} {...props} />)
    expect(lastFrame()).toMatch(/● node01\s+10\.9\.0\.1\s+══\s+2 ┄┄\s+0\s+node02 node03/)
    stdin.write('q')
    await quitted
  })

  it('says when it waits for the controller, and shows a problem', () => {
    const {lastFrame} = render(
      <TopologyView
        topology={undefined}
        networkName="home"
        problem="cannot reach the controller; retrying…"
        width={80}
        height={24}
        onQuit={() => undefined}
      />,
    )
    expect(lastFrame()).toContain('waiting for the controller')
    expect(lastFrame()).toContain('cannot reach the controller; retrying…')
  })
})
