/**
 * Builds a complete lab mesh: controller, N nodes each with its own meshd, one network, every node
 * joined with its own invite, and waits until every pair of nodes pings over the mesh. Shared by
 * `mesh lab up`, the end-to-end tests and the benchmark.
 */
import {Lab, type ControllerOptions} from './lab.js'
import {publicAddress, type NatKind} from './nat.js'

export interface LabSummary {
  prefix: string
  runDir: string
  controller: {
    url: string
    namespace: string
    adminUser: string
    adminPassword: string
    /** Its public addresses: the primary (the API's) and the alternate (STUN RFC 5780). */
    addresses: string[]
  }
  network: {name: string; cidr: string}
  nodes: Array<{
    name: string
    namespace: string
    /** The node's own address: public for plain and `none` nodes, on its LAN behind a NAT. */
    underlay: string
    /** The address the internet sees it at (its router's WAN address behind a NAT). */
    publicAddress: string
    /** NAT labs only: its kind and its router's namespace (none for `none`). */
    nat?: NatKind
    routerNamespace?: string
    address: string
    socket: string
  }>
  /** NAT labs only: the third-party host on the internet. */
  stranger?: {namespace: string; address: string}
  /** The nodes whose every pair was waited on to ping (all, or in a NAT lab the `none` ones). */
  pinged: string[]
  /** Whether `mesh` inside the lab is logged in to the controller as the admin. */
  adminCli: boolean
  /** Milliseconds: the whole build, and the part spent waiting for all pairs to ping. */
  timings: {totalMs: number; allPairsPingMs: number}
}

export interface UpOptions {
  /** Number of nodes; with `nat`, it must be nat.length (or left out). */
  nodes?: number
  /** One NAT kind per node: each behind its own NAT router (cli/lib/lab/nat.ts). */
  nat?: NatKind[]
  network?: string
  cidr?: string
  teardownOnExit?: boolean
  /** Progress lines for people (stderr in the CLI). */
  progress?: (line: string) => void
  /** Leave a failed lab standing for inspection (`mesh lab down` removes it). */
  keepOnFailure?: boolean
  /** Called as soon as the lab exists, before anything can fail: tests register it for teardown. */
  onCreated?: (lab: Lab) => void
  /** How long all pairs may take to ping once every node has joined. */
  pingTimeoutMs?: number
  /** Replicas on a shared database behind a load balancer, instead of one SQLite controller. */
  controller?: ControllerOptions
}

export const DEFAULT_NETWORK = 'lab'
export const DEFAULT_CIDR = '10.240.0.0/24'
export const DEFAULT_NODES = 3

export async function upLab(opts: UpOptions): Promise<{lab: Lab; summary: LabSummary}> {
  const t0 = Date.now()
  const say = opts.progress ?? ((): void => undefined)
  const network = opts.network ?? DEFAULT_NETWORK
  const cidr = opts.cidr ?? DEFAULT_CIDR
  const count = opts.nodes ?? opts.nat?.length ?? DEFAULT_NODES
  if (opts.nat && opts.nat.length !== count)
    throw new Error(`--nat names ${opts.nat.length} kind(s) for ${count} node(s): give one kind per node`)
  // Torn down if this process dies or is interrupted while building; a finished lab is kept
  // unless the caller asked for teardown at exit (tests, benches).
  const lab = await Lab.create({teardownOnExit: true})
  opts.onCreated?.(lab)
  try {
    say(`lab ${lab.prefix}: starting the controller`)
    await lab.startController(opts.controller)
    await lab.createNetwork(network, cidr)
    // The admin CLI inside the lab is a convenience: the lab works without it.
    const adminCli = await lab.loginCli().then(
      () => true,
      (err: Error) => {
        say(`lab ${lab.prefix}: warning: ${err.message}`)
        return false
      },
    )
    const stranger = opts.nat ? await lab.stranger() : undefined
    say(
      `lab ${lab.prefix}: starting ${count} node(s)${opts.nat ? ` behind ${opts.nat.join(', ')} NATs` : ''}`,
    )
    // Indexes are taken in call order, before the first await: node i gets kind i.
    const nodes = await Promise.all(
      Array.from({length: count}, (_, i) => lab.addNode(opts.nat ? {nat: opts.nat[i]!} : {})),
    )
    // Joins one at a time: each is a registration and a netmap push to the others.
    for (const node of nodes) {
      const address = await lab.join(node, network)
      say(`lab ${lab.prefix}: ${node.name} joined ${network} as ${address}`)
    }
    // Behind a NAT a node reports only its LAN endpoint; until NAT traversal lands, only pairs
    // of public (`none`) nodes are sure to connect. Every node did reach the controller over TCP
    // (the join).
    const pinged = opts.nat ? nodes.filter((n) => n.nat === 'none') : nodes
    say(`lab ${lab.prefix}: waiting for every pair${opts.nat ? ' of none nodes' : ''} to ping`)
    const allPairsPingMs = await lab.waitAllPairsPing(network, pinged, opts.pingTimeoutMs ?? 30_000)
    const c = lab.state.controller!
    const summary: LabSummary = {
      prefix: lab.prefix,
      runDir: lab.runDir,
      controller: {
        url: c.url,
        namespace: c.ns,
        adminUser: c.adminUser,
        adminPassword: c.adminPassword,
        addresses: [c.underlay, ...(c.alternateUnderlay ? [c.alternateUnderlay] : [])],
      },
      network: {name: network, cidr},
      nodes: nodes.map((n) => ({
        name: n.name,
        namespace: n.ns,
        underlay: n.underlay,
        publicAddress: publicAddress(n),
        ...(n.nat ? {nat: n.nat} : {}),
        ...(n.router ? {routerNamespace: n.router.ns} : {}),
        address: n.addresses[network]!,
        socket: n.socket,
      })),
      ...(stranger ? {stranger: {namespace: stranger.ns, address: stranger.address}} : {}),
      pinged: pinged.map((n) => n.name),
      adminCli,
      timings: {totalMs: Date.now() - t0, allPairsPingMs},
    }
    if (!opts.teardownOnExit) lab.keepAfterExit()
    return {lab, summary}
  } catch (err) {
    if (opts.keepOnFailure) {
      lab.keepAfterExit()
      lab.close()
      throw err
    }
    // A half-built lab is torn down at once; its logs are what explains the failure.
    const {logs} = lab.teardownSync({keepLogs: true})
    const message = err instanceof Error ? err.message : String(err)
    throw new Error(`${message}${logs ? `\n(lab torn down; logs kept in ${logs})` : ''}`, {cause: err})
  }
}
