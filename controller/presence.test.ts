// In-process presence has no TTL: a node is online from its first session's open to its last
// session's close however far the clock moves, several sessions count once, and overlapping
// open/close calls (a quick reconnect) end in the state the session count says. On going
// offline, the node's pending telemetry is settled before its last-seen time is written.
import {describe, expect, it} from 'vitest'
import {MeshError} from '../shared/errors.js'
import {FakeClock} from '../shared/testing/fake-clock.js'
import {InProcessPresence, withPresence} from './presence.js'
import {storedNode} from './testing/nodes.js'

function setup(opts: {beforeOffline?: (nodeId: string) => Promise<void>} = {}) {
  const clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'))
  const log: string[] = []
  const presence = new InProcessPresence({
    clock,
    writes: {
      touchNodes: async (seen: ReadonlyMap<string, string>) => {
        for (const [id, at] of seen) log.push(`touch ${id} ${at}`)
      },
    },
    ...(opts.beforeOffline ? {beforeOffline: opts.beforeOffline} : {}),
  })
  presence.onChange((e) => log.push(`${e.kind} ${e.node.id} online=${e.node.online} seen=${e.node.lastSeen}`))
  return {clock, presence, log}
}

const node = storedNode({id: 'nd_a'})

describe('InProcessPresence', () => {
  it('keeps a node online without a TTL until its last session closes, however long that is', async () => {
    const {clock, presence, log} = setup()
    await presence.connected(node, 't')
    clock.advance(365 * 86_400_000)
    expect(presence.isOnline(node.id)).toBe(true)
    expect(await presence.onlineAmong([node.id, 'nd_other'])).toEqual(new Set([node.id]))
    await presence.disconnected(node, 't')
    expect(presence.isOnline(node.id)).toBe(false)
    expect(await presence.onlineAmong([node.id])).toEqual(new Set())
    expect(log).toEqual([
      'touch nd_a 2030-01-01T00:00:00.000Z',
      'online nd_a online=true seen=2030-01-01T00:00:00.000Z',
      'touch nd_a 2031-01-01T00:00:00.000Z',
      'offline nd_a online=false seen=2031-01-01T00:00:00.000Z',
    ])
  })

  it('counts several sessions of one node once: online with the first, offline with the last', async () => {
    const {presence, log} = setup()
    await presence.connected(node, 't')
    await presence.connected(node, 't')
    await presence.disconnected(node, 't')
    expect(presence.isOnline(node.id)).toBe(true)
    expect(log.filter((l) => !l.startsWith('touch'))).toEqual([expect.stringMatching(/^online/)])
    await presence.disconnected(node, 't')
    expect(log.filter((l) => !l.startsWith('touch'))).toEqual([
      expect.stringMatching(/^online/),
      expect.stringMatching(/^offline/),
    ])
  })

  it('ends an overlapping close and open (a quick reconnect) online, with no offline event after it', async () => {
    const {presence, log} = setup()
    await presence.connected(node, 't')
    await Promise.all([presence.disconnected(node, 't'), presence.connected(node, 't')])
    expect(presence.isOnline(node.id)).toBe(true)
    expect(log.filter((l) => !l.startsWith('touch')).at(-1)).toMatch(/^online/)
  })

  it('settles the node before writing its last-seen time and saying offline; a removed node is no error', async () => {
    const order: string[] = []
    const {presence, log} = setup({
      beforeOffline: async (id) => {
        order.push(`settle ${id} after ${log.length} entries`)
        throw new MeshError('NOT_FOUND')
      },
    })
    await presence.connected(node, 't')
    await presence.disconnected(node, 't')
    expect(order).toEqual(['settle nd_a after 2 entries'])
    expect(log.at(-1)).toMatch(/^offline/)
  })

  it('shows a stored node with its presence', async () => {
    const {presence} = setup()
    expect(withPresence(presence, node).online).toBe(false)
    await presence.connected(node, 't')
    expect(withPresence(presence, node)).toMatchObject({id: node.id, online: true})
  })
})
