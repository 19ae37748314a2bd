/**
 * Builds a complete lab mesh: controller, N nodes each with its own meshd, one network, every node
 * joined with its own invite, and waits until every pair of nodes pings over the mesh. Shared by
 * `mesh lab up`, the end-to-end tests and the benchmark.
 */
import {Lab} from './lab.js'

export interface LabSummary {
  prefix: string
  runDir: string
  controller: {url: string; namespace: string; adminUser: string; adminPassword: string}
  network: {name: string; cidr: string}
  nodes: Array<{name: string; namespace: string; underlay: string; address: string; socket: string}>
  /** Whether `mesh` inside the lab is logged in to the controller as the admin. */
  adminCli: boolean
  /** Milliseconds: the whole build, and the part spent waiting for all pairs to ping. */
  timings: {totalMs: number; allPairsPingMs: number}
}

export interface UpOptions {
  nodes: number
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
}

export const DEFAULT_NETWORK = 'lab'
export const DEFAULT_CIDR = '10.240.0.0/24'

export async function upLab(opts: UpOptions): Promise<{lab: Lab; summary: LabSummary}> {
  const t0 = Date.now()
  const say = opts.progress ?? ((): void => undefined)
  const network = opts.network ?? DEFAULT_NETWORK
  const cidr = opts.cidr ?? DEFAULT_CIDR
  // Torn down if this process dies or is interrupted while building; a finished lab is kept
  // unless the caller asked for teardown at exit (tests, benches).
  const lab = await Lab.create({teardownOnExit: true})
  opts.onCreated?.(lab)
  try {
    say(`lab ${lab.prefix}: starting the controller`)
    await lab.startController()
    await lab.createNetwork(network, cidr)
    // The admin CLI inside the lab is a convenience: the lab works without it.
    const adminCli = await lab.loginCli().then(
      () => true,
      (err: Error) => {
        say(`lab ${lab.prefix}: warning: ${err.message}`)
        return false
      },
    )
    say(`lab ${lab.prefix}: starting ${opts.nodes} node(s)`)
    const nodes = await Promise.all(Array.from({length: opts.nodes}, () => lab.addNode()))
    // Joins one at a time: each is a registration and a netmap push to the others.
    for (const node of nodes) {
      const address = await lab.join(node, network)
      say(`lab ${lab.prefix}: ${node.name} joined ${network} as ${address}`)
    }
    say(`lab ${lab.prefix}: waiting for every pair to ping`)
    const allPairsPingMs = await lab.waitAllPairsPing(network, nodes, opts.pingTimeoutMs ?? 30_000)
    const c = lab.state.controller!
    const summary: LabSummary = {
      prefix: lab.prefix,
      runDir: lab.runDir,
      controller: {url: c.url, namespace: c.ns, adminUser: c.adminUser, adminPassword: c.adminPassword},
      network: {name: network, cidr},
      nodes: nodes.map((n) => ({
        name: n.name,
        namespace: n.ns,
        underlay: n.underlay,
        address: n.addresses[network]!,
        socket: n.socket,
      })),
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
