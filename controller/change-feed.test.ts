// The in-process change feed: subscribers hear committed node changes after the publishing call
// has returned, all of them in publish order across networks, each carrying (networkId,
// version); one failing subscriber does not keep a change from the others.
import {describe, expect, it} from 'vitest'
import {InProcessChangeFeed} from './change-feed.js'
import type {NodeChange} from './store/store.js'
import {nodeChange, storedNode} from './testing/nodes.js'

const nextTurn = () => new Promise((r) => setImmediate(r))
const key = (c: NodeChange) => `${c.networkId}@${c.version}`

describe('InProcessChangeFeed', () => {
  it('tells subscribers nothing during publish, then every change in publish order on the next turn', async () => {
    const feed = new InProcessChangeFeed()
    const seen: string[] = []
    feed.onNodeChange((c) => seen.push(key(c)))
    const a = storedNode({id: 'a', networkId: 'n1'})
    const b = storedNode({id: 'b', networkId: 'n2'})
    feed.publish(nodeChange(a, 1))
    feed.publish([nodeChange(b, 7), nodeChange(a, 2)])
    feed.publish(nodeChange(b, 8))
    expect(seen).toEqual([])
    await nextTurn()
    expect(seen).toEqual(['n1@1', 'n2@7', 'n1@2', 'n2@8'])
  })

  it('keeps telling the other subscribers when one throws, and logs it', async () => {
    const warned: string[] = []
    const feed = new InProcessChangeFeed({debug: () => undefined, warn: (_o, msg) => warned.push(msg)})
    const seen: number[] = []
    feed.onNodeChange(() => {
      throw new Error('broken subscriber')
    })
    feed.onNodeChange((c) => seen.push(c.version))
    feed.publish([nodeChange(storedNode({id: 'a'}), 1), nodeChange(storedNode({id: 'a'}), 2)])
    await nextTurn()
    expect(seen).toEqual([1, 2])
    expect(warned).toEqual(['node change listener failed', 'node change listener failed'])
  })

  it('stops telling a subscriber once it unsubscribed, even about changes already published', async () => {
    const feed = new InProcessChangeFeed()
    const seen: number[] = []
    const off = feed.onNodeChange((c) => seen.push(c.version))
    feed.publish(nodeChange(storedNode({id: 'a'}), 1))
    off()
    await nextTurn()
    expect(seen).toEqual([])
  })

  it('tells network subscribers of a network change at once', () => {
    const feed = new InProcessChangeFeed()
    const seen: string[] = []
    const off = feed.onNetworkChange((n) => seen.push(n.name))
    const network = {
      id: 'n1',
      tenantId: 't1',
      name: 'renamed',
      cidr: '10.0.0.0/24',
      description: '',
      joinPolicy: 'open' as const,
      maxNodes: null,
      nodeCount: 0,
      createdAt: '2026-01-01T00:00:00.000Z',
    }
    feed.publishNetwork(network)
    off()
    feed.publishNetwork({...network, name: 'unheard'})
    expect(seen).toEqual(['renamed'])
  })
})
