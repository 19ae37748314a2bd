/**
 * Test-only: records the pair rows a store's write transactions touch (upserts, and deletes as
 * path `none`), by wrapping store.write so each transaction sees a recording Tx.
 */
import type {ConnectionWrite, Store, Tx} from '../store/store.js'

export type RecordedPairWrite = Pick<ConnectionWrite, 'nodeA' | 'nodeB' | 'path'>

export function recordPairWrites(store: Store, record: (w: RecordedPairWrite) => void): void {
  const real = store.write.bind(store)
  store.write = <T>(fn: (tx: Tx) => Promise<T>): Promise<T> =>
    real((tx) => {
      const spied: Tx = Object.create(tx) as Tx
      spied.upsertConnection = (networkId, w, at, moveSince, sides) => {
        record({nodeA: w.nodeA, nodeB: w.nodeB, path: w.path})
        return tx.upsertConnection(networkId, w, at, moveSince, sides)
      }
      spied.deleteConnection = (networkId, nodeA, nodeB) => {
        record({nodeA, nodeB, path: 'none'})
        return tx.deleteConnection(networkId, nodeA, nodeB)
      }
      return fn(spied)
    })
}
