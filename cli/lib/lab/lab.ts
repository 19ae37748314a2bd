/**
 * A whole mesh on one machine: a controller and N nodes, each in its own network namespace on a
 * bridged underlay, each node running its own meshd. Used by `mesh lab`, the end-to-end tests and
 * the benchmark. Every step is recorded in the lab's state file before it is taken, so teardown()
 * undoes exactly what was made, also from another process after a crash.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {Agent} from 'undici'
import {MeshError} from '../../../shared/errors.js'
import type {Node as ControllerNode} from '../../../shared/protocol/control-api.js'
import {JoinResultSchema, StatusSchema, type Status} from '../../../shared/protocol/local-api.js'
import {ControllerClient} from '../controller-client.js'
import {DaemonClient} from '../daemon-client.js'
import {meshArgv, meshJs, nodeScriptArgv, projectRoot, shellQuote} from '../self.js'
import {isAlive, signalProc, startProc, stopProc, stopProcSync, tail, type ProcRecord} from './procs.js'
import {run, runSync, sleep, waitFor, type RunOptions, type RunResult} from './sh.js'
import {labDir, listLabs, readState, writeState, type LabNode, type LabState} from './state.js'
import {
  CONTROLLER_ALTERNATE,
  CONTROLLER_UNDERLAY,
  MAX_NODES,
  STRANGER_UNDERLAY,
  addAddress,
  attachBehindRouter,
  attachHost,
  createSwitch,
  deleteNamespaceSync,
  namespaceExists,
  nodeUnderlay,
} from './topology.js'
import {LAN_IF, hostRuleset, loadRuleset, routerLan, routerRuleset, type NatKind} from './nat.js'

export const CONTROLLER_PORT = 8080
/** The lab controller's STUN port, and its RFC 5780 alternate (on CONTROLLER_ALTERNATE). */
export const STUN_PORT = 3478
export const STUN_ALTERNATE_PORT = 3479
/** The lab controller's endpoint-discovery port. */
export const DISCOVERY_PORT = 51820
export const ADMIN_USER = 'admin'

// Where mesh is and how it runs itself again (under Node or as the single binary): self.ts.
export {meshJs, projectRoot}

const forwarderJs = (): string => path.join(projectRoot(), 'dist', 'cli', 'lib', 'lab', 'forwarder.js')

/** What the lab needs from the machine; the first missing thing, or undefined when all is there. */
export function labPrerequisiteProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'the lab needs root (network namespaces)'
  for (const cmd of ['ip', 'wg', 'wireguard-go', 'ping']) {
    if (runSync('sh', ['-c', `command -v ${cmd}`], {timeoutMs: 5000}).code !== 0)
      return `${cmd} is not installed`
  }
  if (!fs.existsSync('/dev/net/tun')) return '/dev/net/tun is missing'
  if (!fs.existsSync(meshJs()) || !fs.existsSync(forwarderJs()))
    return 'mesh is not built (run bash scripts/build.sh)'
  return undefined
}

/** What a NAT lab (`--nat`) needs on top of labPrerequisiteProblem(). */
export function natPrerequisiteProblem(): string | undefined {
  for (const cmd of ['nft', 'sysctl']) {
    if (runSync('sh', ['-c', `command -v ${cmd}`], {timeoutMs: 5000}).code !== 0)
      return `${cmd} is not installed (the NAT routers need nftables)`
  }
  return undefined
}

/** A controller replica behind the lab's load balancer (ControllerOptions.loadBalancer). */
export interface ReplicaBackend {
  /** Its name for the load balancer: r1, r2, … */
  name: string
  /** Its recorded process (Lab.proc): controller/r1, … */
  proc: string
  host: string
  port: number
}

/**
 * How the lab runs its controller. By default one process on SQLite listening on the
 * controller's URL. With `replicas` > 1: that many processes on one PostgreSQL `database`,
 * each on its own port of the controller's address (CONTROLLER_PORT + i) with its own STUN and
 * discovery ports, and `loadBalancer` (haproxy, say: the lab does not bring one) listening on
 * the controller's URL in front of them, in the controller's namespace.
 */
export interface ControllerOptions {
  /** --database of every replica (`postgres://…`); default SQLite in the data dir. */
  database?: string
  replicas?: number
  loadBalancer?: (lb: {
    ns: string
    listen: {host: string; port: number}
    backends: ReplicaBackend[]
  }) => Promise<void>
}

export const requireRoot = (): void => {
  if (process.getuid?.() !== 0) throw new MeshError('ROOT_REQUIRED', {message: 'mesh lab must run as root'})
}

export interface LabOptions {
  /** Use this prefix instead of a random one (must match PREFIX_RE and be unused). */
  prefix?: string
  /** Tear the lab down when this process exits or gets SIGINT/SIGTERM (tests, benches). */
  teardownOnExit?: boolean
}

const randomPrefix = (): string => `ml${randomBytes(2).toString('hex')}`

export class Lab {
  state: LabState
  #client: ControllerClient | undefined
  #agent: Agent | undefined
  #exitHandlers: Array<[string, (...a: unknown[]) => void]> = []

  private constructor(state: LabState) {
    this.state = state
  }

  get prefix(): string {
    return this.state.prefix
  }
  get runDir(): string {
    return this.state.runDir
  }
  get nodes(): LabNode[] {
    return this.state.nodes
  }

  /** Makes the run dir, the state file and the switch namespace. */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    requireRoot()
    let prefix = opts.prefix
    for (let i = 0; prefix === undefined && i < 20; i++) {
      const p = randomPrefix()
      if (!fs.existsSync(labDir(p)) && !namespaceExists(`${p}-sw`)) prefix = p
    }
    if (prefix === undefined) throw new Error('no free lab prefix after 20 tries')
    const runDir = labDir(prefix)
    // Traversable by anyone, listable by no one: sockets inside are guarded by their own mode
    // (which is what the socket-permission test must exercise), secrets by 0600/0700. The lab
    // root gets that mode only when the lab makes it: MESH_LAB_ROOT may name a shared dir
    // such as /tmp, whose mode is not ours to change.
    if (fs.mkdirSync(path.dirname(runDir), {recursive: true, mode: 0o711}) !== undefined)
      fs.chmodSync(path.dirname(runDir), 0o711)
    fs.mkdirSync(path.join(runDir, 'logs'), {recursive: true, mode: 0o700})
    fs.chmodSync(runDir, 0o711)
    fs.mkdirSync(path.join(runDir, 'bin'), {recursive: true})
    // Inside namespaces `mesh` must resolve to this build on the pinned Node.
    fs.writeFileSync(
      path.join(runDir, 'bin', 'mesh'),
      `#!/bin/sh\nexec ${meshArgv().map(shellQuote).join(' ')} "$@"\n`,
      {mode: 0o755},
    )
    const lab = new Lab({
      version: 1,
      prefix,
      createdAt: new Date().toISOString(),
      runDir,
      namespaces: [],
      switchNs: `${prefix}-sw`,
      nodes: [],
      networks: [],
      procs: [],
    })
    if (opts.teardownOnExit) lab.#installExitHandlers()
    lab.#save()
    await lab.#addNamespace(lab.state.switchNs, () => createSwitch(lab.state.switchNs))
    return lab
  }

  /** Reattaches to a lab made by another process (`mesh lab exec`, `mesh lab down`). */
  static open(prefix: string): Lab | undefined {
    const state = readState(prefix)
    return state ? new Lab(state) : undefined
  }

  /** The lab named by `prefix`, else MESH_LAB, else the newest lab. */
  static current(prefix?: string): Lab | undefined {
    const p = prefix ?? process.env.MESH_LAB ?? listLabs().at(-1)
    return p === undefined ? undefined : Lab.open(p)
  }

  #save(): void {
    writeState(this.state)
  }

  async #addNamespace(ns: string, make: () => Promise<void>): Promise<void> {
    // Recorded first: a crash half-way still leaves the namespace on the list to delete.
    this.state.namespaces.push(ns)
    this.#save()
    await make()
  }

  #recordProc(p: ProcRecord): void {
    this.state.procs = this.state.procs.filter((q) => q.name !== p.name)
    this.state.procs.push(p)
    this.#save()
  }

  proc(name: string): ProcRecord | undefined {
    return this.state.procs.find((p) => p.name === name)
  }

  log(name: string): string {
    return path.join(this.runDir, 'logs', `${name.replace(/\//g, '-')}.log`)
  }

  /** Environment for commands run inside the lab: `mesh` on PATH; MESH_SOCKET for nodes. */
  env(node?: LabNode): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${path.join(this.runDir, 'bin')}:${process.env.PATH ?? ''}`,
    }
    if (node) env.MESH_SOCKET = node.socket
    env.MESH_CONFIG_DIR = path.join(this.runDir, 'cli-config')
    return env
  }

  // -------------------------------------------------------------------------------------------
  // Controller

  /**
   * Starts the controller in its namespace and logs in as the admin. With `replicas`, starts
   * that many `mesh controller start` processes on one `database` (PostgreSQL) and has
   * `loadBalancer` put a load balancer on the controller's URL in front of them: see
   * ControllerOptions.
   */
  async startController(opts: {timeoutMs?: number} & ControllerOptions = {}): Promise<void> {
    const ns = `${this.prefix}-ctl`
    if (!this.state.controller) {
      await this.#addNamespace(ns, () =>
        attachHost({
          switchNs: this.state.switchNs,
          ns,
          port: `${this.prefix}-ctl`,
          address: CONTROLLER_UNDERLAY,
        }),
      )
      await addAddress(ns, CONTROLLER_ALTERNATE)
      this.state.controller = {
        ns,
        underlay: CONTROLLER_UNDERLAY,
        alternateUnderlay: CONTROLLER_ALTERNATE,
        url: `http://${CONTROLLER_UNDERLAY}:${CONTROLLER_PORT}`,
        dataDir: path.join(this.runDir, 'controller'),
        apiSocket: path.join(this.runDir, 'controller-api.sock'),
        adminUser: ADMIN_USER,
        adminPassword: randomBytes(18).toString('base64url'),
      }
      this.#save()
    }
    const c = this.state.controller
    const replicas = opts.replicas ?? 1
    if (replicas > 1 && (opts.database === undefined || opts.loadBalancer === undefined))
      throw new Error('controller replicas need a shared database and a load balancer')
    const backends: ReplicaBackend[] = []
    for (let i = 1; i <= replicas; i++) {
      // One replica listens on the controller's URL itself; several take ports after it, each
      // with its own STUN and discovery ports, and trust the load balancer beside them.
      const one = replicas === 1
      const name = one ? 'controller' : `controller/r${i}`
      const apiPort = one ? CONTROLLER_PORT : CONTROLLER_PORT + i
      const log = this.log(name)
      const before = fileSize(log)
      const proc = startProc({
        name,
        ns,
        log,
        argv: [
          ...meshArgv(),
          'controller',
          'start',
          '--data-dir',
          one ? c.dataDir : path.join(c.dataDir, `r${i}`),
          '--listen',
          `${c.underlay}:${apiPort}`,
          '--public-url',
          c.url,
          // NAT traversal: STUN with its RFC 5780 alternate (other address and port), and
          // endpoint discovery, all on the controller's public addresses.
          '--stun-listen',
          `${c.underlay}:${STUN_PORT + 2 * (i - 1)}`,
          '--stun-alternate',
          `${c.alternateUnderlay ?? CONTROLLER_ALTERNATE}:${STUN_ALTERNATE_PORT + 2 * (i - 1)}`,
          '--discovery-listen',
          `${c.underlay}:${DISCOVERY_PORT + (i - 1)}`,
          ...(opts.database !== undefined ? ['--database', opts.database] : []),
          // Replicas: each one's built-in relay at its own listener, so they mesh (a node relayed
          // through one replica reaches a node relayed through another).
          ...(one ? [] : ['--trusted-proxy', c.underlay, '--relay-url', `http://${c.underlay}:${apiPort}`]),
        ],
        env: {...this.env(), MESH_ADMIN_PASSWORD: c.adminPassword},
      })
      this.#recordProc(proc)
      // One at a time: the first replica migrates the database and creates the admin.
      await waitFor(
        `${name} to listen`,
        () => {
          if (!isAlive(proc)) throw new Error(`${name} exited:\n${tail(log)}`)
          return readFrom(log, before).includes('"listening"')
        },
        {timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 100},
      )
      backends.push({name: one ? 'controller' : `r${i}`, proc: name, host: c.underlay, port: apiPort})
    }
    if (replicas > 1)
      await opts.loadBalancer!({ns, listen: {host: c.underlay, port: CONTROLLER_PORT}, backends})
    if (!this.proc('forwarder') || !isAlive(this.proc('forwarder')!)) {
      this.#recordProc(
        startProc({
          name: 'forwarder',
          ns,
          log: this.log('forwarder'),
          argv: [...nodeScriptArgv(forwarderJs()), c.apiSocket, c.underlay, String(CONTROLLER_PORT)],
        }),
      )
    }
    await waitFor('the controller API socket', () => fs.existsSync(c.apiSocket), {
      timeoutMs: opts.timeoutMs ?? 30_000,
      intervalMs: 100,
    })
    this.#client = undefined
    const res = await this.admin().login({username: c.adminUser, password: c.adminPassword})
    c.token = res.token
    this.#client = undefined
    this.#save()
  }

  /**
   * Logs the lab's admin CLI in (`mesh login`, config in RUN/cli-config, shared by every
   * namespace of the lab), so `mesh lab exec node1 -- mesh node list -n lab` just works.
   */
  async loginCli(): Promise<void> {
    const c = this.state.controller
    if (!c) throw new Error('the lab has no controller')
    const [program, ...self] = meshArgv()
    const r = await run(
      program!,
      [...self, 'login', '--controller', c.url, '--user', c.adminUser, '--password-stdin'],
      {ns: c.ns, env: this.env(), input: c.adminPassword, timeoutMs: 30_000},
    )
    if (r.code !== 0) throw new Error(`mesh login in the lab failed (exit ${r.code}): ${r.stderr.trim()}`)
  }

  /**
   * Kills the controller (SIGKILL by default: the data-plane-survives test), or one replica of
   * it by its process name (`controller/r1`).
   */
  async killController(signal: NodeJS.Signals = 'SIGKILL', name = 'controller'): Promise<void> {
    const p = this.proc(name)
    if (!p) return
    if (signal === 'SIGTERM') return stopProc(p)
    signalProc(p, signal)
    await waitFor('the controller to exit', () => !isAlive(p), {timeoutMs: 5000, intervalMs: 20})
  }

  /** A controller API client (as the admin once logged in), reached through the forwarder socket. */
  admin(): ControllerClient {
    const c = this.state.controller
    if (!c) throw new Error('the lab has no controller')
    this.#agent ??= new Agent({connect: {socketPath: c.apiSocket}, keepAliveTimeout: 1000})
    this.#client ??= new ControllerClient({
      url: c.url,
      token: c.token,
      dispatcher: this.#agent,
      timeoutMs: 15_000,
    })
    return this.#client
  }

  async createNetwork(name: string, cidr: string): Promise<void> {
    await this.admin().createNetwork({name, cidr})
    this.state.networks.push({name, cidr})
    this.#save()
  }

  async invite(network: string, maxUses = 1): Promise<string> {
    const res = await this.admin().createInvite({network}, {maxUses})
    return res.joinString
  }

  async controllerNodes(network: string): Promise<ControllerNode[]> {
    const res = await this.admin().listNodes({network})
    return res.items
  }

  // -------------------------------------------------------------------------------------------
  // Nodes

  /**
   * Adds a node namespace and (unless `daemon: false`, a bare host for static WireGuard
   * comparisons and probes) starts its meshd and waits for its socket. Without `nat` the node
   * sits on the underlay with no firewall (the plain lab); with `nat: 'none'` too, plus the
   * counting table; with any other kind it sits on a private LAN behind its own NAT router
   * (cli/lib/lab/nat.ts), whose WAN address takes the node's slot on the underlay.
   */
  async addNode(opts: {daemon?: boolean; nat?: NatKind} = {}): Promise<LabNode> {
    const index = Math.max(0, ...this.state.nodes.map((n) => n.index)) + 1
    if (index > MAX_NODES) throw new Error(`the lab holds at most ${MAX_NODES} nodes`)
    const name = `node${index}`
    const kind = opts.nat
    const behindRouter = kind !== undefined && kind !== 'none'
    const lan = behindRouter ? routerLan(index) : undefined
    const node: LabNode = {
      name,
      index,
      ns: `${this.prefix}-n${index}`,
      underlay: lan ? lan.host : nodeUnderlay(index),
      ...(kind ? {nat: kind} : {}),
      ...(lan
        ? {
            router: {
              ns: `${this.prefix}-r${index}`,
              wan: nodeUnderlay(index),
              lan: lan.cidr,
              gateway: lan.gateway,
            },
          }
        : {}),
      socket: path.join(this.runDir, `${name}.sock`),
      stateDir: path.join(this.runDir, name),
      interfacePrefix: `${this.prefix}n${index}`,
      addresses: {},
      nodeIds: {},
    }
    this.state.nodes.push(node)
    const controller = this.#controllerAddresses()
    if (node.router && lan) {
      const router = node.router
      await this.#addNamespace(router.ns, () =>
        attachHost({
          switchNs: this.state.switchNs,
          ns: router.ns,
          port: `${this.prefix}-r${index}`,
          address: router.wan,
        }),
      )
      await this.#addNamespace(node.ns, () =>
        attachBehindRouter({routerNs: router.ns, ns: node.ns, lanIf: LAN_IF, ...lan}),
      )
      await loadRuleset(
        router.ns,
        routerRuleset({kind: kind as Exclude<NatKind, 'none'>, client: lan.host, controller}),
      )
    } else {
      await this.#addNamespace(node.ns, () =>
        attachHost({
          switchNs: this.state.switchNs,
          ns: node.ns,
          port: `${this.prefix}-n${index}`,
          address: node.underlay,
        }),
      )
      if (kind === 'none') await loadRuleset(node.ns, hostRuleset({controller}))
    }
    if (opts.daemon !== false) await this.startDaemon(node)
    return node
  }

  /** The controller's public addresses (also before it runs: they are fixed). */
  #controllerAddresses(): string[] {
    const c = this.state.controller
    return c
      ? [c.underlay, ...(c.alternateUnderlay ? [c.alternateUnderlay] : [])]
      : [CONTROLLER_UNDERLAY, CONTROLLER_ALTERNATE]
  }

  /**
   * A bare host on the internet (198.51.100.3) that is neither the controller nor a node: the
   * third party of the NAT filtering tests. Made on first use.
   */
  async stranger(): Promise<{ns: string; address: string}> {
    if (!this.state.stranger) {
      const ns = `${this.prefix}-x`
      await this.#addNamespace(ns, () =>
        attachHost({switchNs: this.state.switchNs, ns, port: `${this.prefix}-x`, address: STRANGER_UNDERLAY}),
      )
      this.state.stranger = {ns, address: STRANGER_UNDERLAY}
      this.#save()
    }
    return this.state.stranger
  }

  node(name: string): LabNode {
    const n = this.state.nodes.find((x) => x.name === name || x.ns === name || String(x.index) === name)
    if (!n) throw new MeshError('NOT_FOUND', {message: `no node ${name} in lab ${this.prefix}`})
    return n
  }

  /** Starts (or restarts) a node's meshd and waits until its socket answers. */
  async startDaemon(node: LabNode, opts: {timeoutMs?: number} = {}): Promise<void> {
    fs.mkdirSync(node.stateDir, {recursive: true, mode: 0o700})
    const log = this.log(`${node.name}/meshd`)
    const p = startProc({
      name: `${node.name}/meshd`,
      ns: node.ns,
      log,
      argv: [
        ...meshArgv(),
        'daemon',
        'run',
        '--socket',
        node.socket,
        '--state-dir',
        node.stateDir,
        '--interface-prefix',
        node.interfacePrefix,
      ],
      env: this.env(),
    })
    this.#recordProc(p)
    await waitFor(
      `${node.name}'s meshd to answer`,
      async () => {
        if (!isAlive(p)) throw new Error(`meshd of ${node.name} exited:\n${tail(log)}`)
        // Asked on the socket directly: a CLI process per probe is slow on a loaded machine.
        if (!fs.existsSync(node.socket)) return false
        await new DaemonClient({socketPath: node.socket, timeoutMs: 5000}).status()
        return true
      },
      // Generous: nodes start in parallel, and CI machines run other tests beside the lab.
      {timeoutMs: opts.timeoutMs ?? 60_000, intervalMs: 100},
    )
  }

  /** Stops a node's meshd: SIGTERM (a clean stop) or SIGKILL (a crash). */
  async stopDaemon(node: LabNode, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc(`${node.name}/meshd`)
    if (!p) return
    if (signal === 'SIGTERM') await stopProc(p, 5000)
    else {
      signalProc(p, signal)
      await waitFor(`meshd of ${node.name} to exit`, () => !isAlive(p), {timeoutMs: 5000, intervalMs: 20})
    }
  }

  /** Starts a recorded helper process (an iperf3 server, say) inside a node's namespace. */
  startHelper(node: LabNode, name: string, argv: string[]): ProcRecord {
    const p = startProc({
      name: `${node.name}/${name}`,
      ns: node.ns,
      log: this.log(`${node.name}/${name}`),
      argv,
    })
    this.#recordProc(p)
    return p
  }

  async stopHelper(node: LabNode, name: string): Promise<void> {
    const p = this.proc(`${node.name}/${name}`)
    if (p) await stopProc(p)
  }

  /** Runs the mesh CLI inside a node's namespace against its meshd. */
  mesh(node: LabNode, args: string[], opts: Omit<RunOptions, 'ns'> = {}): Promise<RunResult> {
    const [program, ...self] = meshArgv()
    return run(program!, [...self, ...args], {
      ns: node.ns,
      env: {...this.env(node), ...opts.env},
      timeoutMs: opts.timeoutMs ?? 30_000,
      ...(opts.user ? {user: opts.user} : {}),
      ...(opts.input !== undefined ? {input: opts.input} : {}),
    })
  }

  /** `mesh status --json` of a node, parsed; undefined when meshd does not answer. */
  async status(node: LabNode): Promise<Status | undefined> {
    const r = await this.mesh(node, ['status', '--json'], {timeoutMs: 10_000})
    if (r.code !== 0) return undefined
    const parsed = StatusSchema.safeParse(JSON.parse(r.stdout))
    if (!parsed.success)
      throw new Error(`mesh status --json of ${node.name} did not parse: ${parsed.error.message}`)
    return parsed.data
  }

  /**
   * Joins a node to a network (`mesh join` in its namespace) with the given join string or a
   * fresh single-use invite; records its address and id.
   */
  async join(node: LabNode, network: string, opts: {joinString?: string} = {}): Promise<string> {
    const joinString = opts.joinString ?? (await this.invite(network))
    const r = await this.mesh(node, ['join', joinString, '--name', node.name, '--json'], {timeoutMs: 30_000})
    if (r.code !== 0) {
      throw new Error(
        `mesh join failed on ${node.name} (exit ${r.code}): ${r.stderr || r.stdout}\n${this.logTail(node)}`,
      )
    }
    // `mesh join --json` prints the joined network's status; older builds may not: ask meshd.
    const joined = JoinResultSchema.safeParse(safeJson(r.stdout))
    const net = joined.success
      ? joined.data
      : (await this.status(node))?.networks.find((n) => n.name === network)
    if (!net) throw new Error(`${node.name} joined ${network} but its status does not list it`)
    node.addresses[network] = net.address
    node.nodeIds[network] = net.nodeId
    this.#save()
    return net.address
  }

  logTail(node: LabNode, lines = 30): string {
    return `--- ${node.name} meshd log:\n${tail(this.log(`${node.name}/meshd`), lines)}`
  }

  /** WireGuard interface of a node for a network, from its meshd. */
  async interfaceOf(node: LabNode, network: string): Promise<string> {
    const st = await this.status(node)
    const net = st?.networks.find((n) => n.name === network)
    if (!net) throw new Error(`${node.name} is not in ${network}`)
    return net.interface
  }

  /**
   * Public keys of the mesh peers WireGuard itself has on an interface: those with allowed IPs
   * (`wg show IF allowed-ips`). The controller's endpoint-discovery key, which meshd adds with no
   * allowed IPs (it routes nothing), is left out.
   */
  async wgPeers(node: LabNode, iface: string): Promise<string[]> {
    const r = await run('wg', ['show', iface, 'allowed-ips'], {ns: node.ns, timeoutMs: 5000})
    if (r.code !== 0) throw new Error(`wg show ${iface} allowed-ips in ${node.ns}: ${r.stderr.trim()}`)
    return r.stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f.length >= 2 && f[1] !== '(none)')
      .map((f) => f[0]!)
  }

  /** One ping from a node's namespace; true when it was answered within `waitS` seconds. */
  async ping(node: LabNode, address: string, waitS = 1): Promise<boolean> {
    const r = await run('ping', ['-n', '-q', '-c', '1', '-W', String(waitS), address], {
      ns: node.ns,
      timeoutMs: (waitS + 3) * 1000,
    })
    return r.code === 0
  }

  /** Waits until every ordered pair of `nodes` pings over `network`; returns the time it took. */
  async waitAllPairsPing(
    network: string,
    nodes: LabNode[] = this.nodes,
    timeoutMs = 30_000,
  ): Promise<number> {
    const t0 = Date.now()
    const pairs = nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => [a, b] as const))
    await Promise.all(
      pairs.map(([a, b]) => {
        const addr = b.addresses[network]
        if (!addr) throw new Error(`${b.name} has no address in ${network}`)
        return waitFor(`${a.name} -> ${b.name} (${addr}) ping over ${network}`, () => this.ping(a, addr), {
          timeoutMs,
          intervalMs: 50,
        })
      }),
    )
    return Date.now() - t0
  }

  // -------------------------------------------------------------------------------------------
  // Teardown

  #installExitHandlers(): void {
    const onExit = (): void => {
      this.teardownSync()
    }
    const onSignal = (sig: unknown): void => {
      this.teardownSync()
      process.exit(128 + (sig === 'SIGINT' ? 2 : 15))
    }
    process.once('exit', onExit)
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    this.#exitHandlers = [
      ['exit', onExit],
      ['SIGINT', onSignal],
      ['SIGTERM', onSignal],
    ]
  }

  /** Stops tearing the lab down at exit: it was built to outlive this process (`mesh lab up`). */
  keepAfterExit(): void {
    for (const [ev, fn] of this.#exitHandlers) process.removeListener(ev, fn)
    this.#exitHandlers = []
  }

  /** Lets go of this process's connections; the lab itself keeps running. */
  close(): void {
    void this.#agent?.close().catch(() => undefined)
    this.#agent = undefined
    this.#client = undefined
  }

  /** Removes everything the lab made; safe to call twice. */
  teardownSync(opts: {keepLogs?: boolean} = {}): {logs?: string} {
    for (const [ev, fn] of this.#exitHandlers) process.removeListener(ev, fn)
    this.#exitHandlers = []
    this.close()
    return teardownSync(this.state, opts)
  }

  async destroy(opts: {keepLogs?: boolean} = {}): Promise<void> {
    this.teardownSync(opts)
    await sleep(0)
  }
}

/**
 * Undoes a lab from its state alone: stops the recorded processes (only those, checked by start
 * time), deletes its namespaces (which takes veths and tun devices with them), removes stale
 * wireguard-go sockets of its prefix and the run dir. With keepLogs the logs are copied to a
 * fresh /tmp/mesh-lab-<prefix>-logs-XXXXXX first.
 */
export function teardownSync(state: LabState, opts: {keepLogs?: boolean} = {}): {logs?: string} {
  const procs = [...state.procs].reverse()
  for (const p of procs) signalProc(p, 'SIGTERM')
  const deadline = Date.now() + 3000
  const tick = new Int32Array(new SharedArrayBuffer(4))
  while (Date.now() < deadline && procs.some(isAlive)) Atomics.wait(tick, 0, 0, 25)
  for (const p of procs) stopProcSync(p, 0)
  for (const ns of [...state.namespaces].reverse()) deleteNamespaceSync(ns)
  const wgDir = '/var/run/wireguard'
  try {
    for (const f of fs.readdirSync(wgDir)) {
      if (f.startsWith(state.prefix) && f.endsWith('.sock')) fs.rmSync(path.join(wgDir, f), {force: true})
    }
  } catch {
    // no wireguard-go sockets at all
  }
  let logs: string | undefined
  if (opts.keepLogs) {
    // A fresh 0700 dir of our own: a fixed name in the shared /tmp could be planted (a symlink,
    // say) by another user for root to write through.
    logs = fs.mkdtempSync(path.join(os.tmpdir(), `mesh-lab-${state.prefix}-logs-`))
    try {
      fs.cpSync(path.join(state.runDir, 'logs'), logs, {recursive: true})
    } catch {
      fs.rmSync(logs, {recursive: true, force: true})
      logs = undefined
    }
  }
  // Only ever the lab's own directory under the lab root.
  if (path.basename(state.runDir) === state.prefix) fs.rmSync(state.runDir, {recursive: true, force: true})
  return logs ? {logs} : {}
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size
  } catch {
    return 0
  }
}

function readFrom(file: string, offset: number): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(offset)
  } catch {
    return ''
  }
}
