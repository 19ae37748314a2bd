/**
 * The store reads a netmap session starts from and resumes with: a network's snapshot (network,
 * version, nodes, and its tenant's ACL policy with the user names it may name) and the node ids
 * changed since a version. The netmap hub takes this, not the store, so it cannot write.
 *
 * Replicas: reads only; the version and the change log are rows, so every replica resumes a node
 * from the same history.
 */
import type {Network} from '../shared/protocol/control-api.js'
import type {Store, StoredNode} from './store/store.js'

/** Users read per page when a policy needs the tenant's user names. */
const USER_PAGE = 1000

/** What the netmap hub starts a network from. */
export interface NetmapSnapshot {
  readonly network: Network
  readonly version: number
  readonly nodes: StoredNode[]
  /** The tenant's policy document; null when it has none (every node may reach every other). */
  readonly policy: string | null
  /** User id -> user name of the tenant's users; read only when there is a policy (else empty). */
  readonly owners: ReadonlyMap<string, string>
  /**
   * User id -> the IdP groups of their last OIDC logins (policy groups may name them as
   * `oidc:NAME`); read only when there is a policy (else empty); users without any are absent.
   */
  readonly ownerGroups?: ReadonlyMap<string, readonly string[]>
}

/** The store reads a netmap session needs. */
export interface NetmapSource {
  /**
   * The network, its version, every node and the tenant's policy; undefined when the network is
   * gone. The version is read FIRST, so the node list is at least as new as the version it is
   * paired with; the policy is read after the nodes (a policy change told meanwhile makes the
   * hub read again).
   */
  netmapSnapshot(networkId: string): Promise<NetmapSnapshot | undefined>
  /** Node ids changed since `version`, or undefined when only a full map will do. */
  changesSince(networkId: string, version: number): Promise<{version: number; nodeIds: string[]} | undefined>
}

/** A NetmapSource reading `store`. */
export function storeNetmapSource(
  store: Pick<
    Store,
    | 'netmapVersion'
    | 'getNetwork'
    | 'allNodes'
    | 'changesSince'
    | 'getPolicy'
    | 'listUsers'
    | 'identityGroupsOf'
  >,
): NetmapSource {
  return {
    async netmapSnapshot(networkId) {
      const version = await store.netmapVersion(networkId)
      const network = await store.getNetwork(networkId)
      if (!network) return undefined
      const nodes = await store.allNodes(networkId)
      const policy = (await store.getPolicy(network.tenantId))?.document ?? null
      const owners = new Map<string, string>()
      let ownerGroups: ReadonlyMap<string, readonly string[]> = new Map()
      if (policy !== null) {
        ownerGroups = await store.identityGroupsOf(network.tenantId)
        let cursor: string | undefined
        // Bounded: each page moves the cursor forward; a tenant has finitely many users.
        for (;;) {
          const page = await store.listUsers(network.tenantId, {limit: USER_PAGE, cursor})
          for (const u of page.items) owners.set(u.id, u.username)
          if (page.nextCursor === null) break
          cursor = page.nextCursor
        }
      }
      return {network, version, nodes, policy, owners, ownerGroups}
    },
    changesSince: (networkId, version) => store.changesSince(networkId, version),
  }
}
