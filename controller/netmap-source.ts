/**
 * The store reads a netmap session starts from and resumes with: a network's snapshot (network,
 * version, nodes) and the node ids changed since a version. The netmap hub takes this, not the
 * store, so it cannot write.
 *
 * Replicas: reads only; the version and the change log are rows, so every replica resumes a node
 * from the same history.
 */
import type {Network} from '../shared/protocol/control-api.js'
import type {Store, StoredNode} from './store/store.js'

/** The store reads a netmap session needs. */
export interface NetmapSource {
  /**
   * The network, its version and every node; undefined when the network is gone. The version
   * is read FIRST, so the node list is at least as new as the version it is paired with.
   */
  netmapSnapshot(
    networkId: string,
  ): Promise<{network: Network; version: number; nodes: StoredNode[]} | undefined>
  /** Node ids changed since `version`, or undefined when only a full map will do. */
  changesSince(networkId: string, version: number): Promise<{version: number; nodeIds: string[]} | undefined>
}

/** A NetmapSource reading `store`. */
export function storeNetmapSource(
  store: Pick<Store, 'netmapVersion' | 'getNetwork' | 'allNodes' | 'changesSince'>,
): NetmapSource {
  return {
    async netmapSnapshot(networkId) {
      const version = await store.netmapVersion(networkId)
      const network = await store.getNetwork(networkId)
      if (!network) return undefined
      return {network, version, nodes: await store.allNodes(networkId)}
    },
    changesSince: (networkId, version) => store.changesSince(networkId, version),
  }
}
