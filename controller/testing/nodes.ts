/**
 * Test-only: stored nodes and node changes built in memory, for unit tests of the parts that
 * take them (presence, the change feed, the reaper) without a store.
 */
import type {NodeChange, StoredNode} from '../store/store.js'

export function storedNode(over: Partial<StoredNode> & {id: string}): StoredNode {
  return {
    networkId: 'n_test',
    name: over.id,
    hostname: 'host',
    os: 'linux',
    publicKey: Buffer.alloc(32, 1).toString('base64'),
    address: '10.0.0.2',
    status: 'active',
    lastSeen: null,
    endpoints: [],
    tags: [],
    ephemeral: false,
    createdAt: '2026-01-01T00:00:00.000Z',
    ...over,
  }
}

/** A `changed` NodeChange of `node` at `version` of its network. */
export function nodeChange(node: StoredNode, version: number): NodeChange {
  return {
    networkId: node.networkId,
    tenantId: 't_test',
    version,
    nodeId: node.id,
    kind: 'changed',
    node,
    before: node,
  }
}
