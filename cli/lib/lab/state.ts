/**
 * The lab's state file, /run/mesh-lab/<prefix>/lab.json: everything a lab made (namespaces, pids,
 * sockets, the admin login), written before and after every step so that `mesh lab down` can undo
 * it all, also after the lab itself crashed half-way.
 */
import fs from 'node:fs'
import path from 'node:path'
import {z} from 'zod'
import {NAT_KINDS} from './nat.js'

/** Where labs live; tests and benches may point it elsewhere. */
export const labRoot = (): string => process.env.MESH_LAB_ROOT ?? '/run/mesh-lab'

/** A run prefix: `ml` + 4 hex digits. Short, because it starts every interface name (≤ 15 chars). */
export const PREFIX_RE = /^ml[0-9a-f]{4}$/

const ProcSchema = z.object({
  name: z.string(),
  pid: z.number().int().positive(),
  startTime: z.string(),
  ns: z.string(),
  log: z.string(),
  argv: z.array(z.string()),
})

export const LabNodeSchema = z.object({
  /** `node1`, `node2`, ... */
  name: z.string(),
  index: z.number().int().positive(),
  ns: z.string(),
  /**
   * The node's own eth0 address: in 198.51.100.0/24 on the switch, or, behind a NAT router,
   * on its private LAN (172.16.N.2).
   */
  underlay: z.string(),
  /** The NAT kind it was built with (`--nat`); absent for a plain lab node (no nft table). */
  nat: z.enum(NAT_KINDS).optional(),
  /** Its NAT router, for every kind but `none`. */
  router: z
    .object({
      ns: z.string(),
      /** The router's public (WAN) address in 198.51.100.0/24: what the internet sees. */
      wan: z.string(),
      /** The LAN: CIDR, the router's address on it (the node's default gateway). */
      lan: z.string(),
      gateway: z.string(),
    })
    .optional(),
  socket: z.string(),
  stateDir: z.string(),
  interfacePrefix: z.string(),
  /** Mesh addresses by network name, as the daemon reported them after joining. */
  addresses: z.record(z.string(), z.string()).default({}),
  /** Controller node ids by network name. */
  nodeIds: z.record(z.string(), z.string()).default({}),
})
export type LabNode = z.infer<typeof LabNodeSchema>

export const LabStateSchema = z.object({
  version: z.literal(1),
  prefix: z.string().regex(PREFIX_RE),
  createdAt: z.string(),
  runDir: z.string(),
  /** Every namespace created, in creation order (the switch first). */
  namespaces: z.array(z.string()),
  switchNs: z.string(),
  controller: z
    .object({
      ns: z.string(),
      underlay: z.string(),
      /** A second public address of the controller's namespace (STUN RFC 5780 tests). */
      alternateUnderlay: z.string().optional(),
      url: z.string(),
      dataDir: z.string(),
      /** Unix socket in the run dir forwarded to the controller's TCP port inside its namespace. */
      apiSocket: z.string(),
      adminUser: z.string(),
      adminPassword: z.string(),
      token: z.string().optional(),
    })
    .optional(),
  nodes: z.array(LabNodeSchema),
  /** A bare host on the internet that is neither controller nor node (unsolicited traffic). */
  stranger: z.object({ns: z.string(), address: z.string()}).optional(),
  /** Networks the lab created, by name. */
  networks: z.array(z.object({name: z.string(), cidr: z.string()})).default([]),
  procs: z.array(ProcSchema),
})
export type LabState = z.infer<typeof LabStateSchema>

export const labDir = (prefix: string): string => path.join(labRoot(), prefix)
export const stateFile = (prefix: string): string => path.join(labDir(prefix), 'lab.json')

/** Writes atomically (rename), mode 0600: the file holds the admin password. */
export function writeState(state: LabState): void {
  const file = stateFile(state.prefix)
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o700})
  const tmp = `${file}.tmp`
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', {mode: 0o600})
  fs.renameSync(tmp, file)
}

/** Reads a lab's state; undefined when there is no such lab or the file is unreadable. */
export function readState(prefix: string): LabState | undefined {
  try {
    const parsed = LabStateSchema.safeParse(JSON.parse(fs.readFileSync(stateFile(prefix), 'utf8')))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

/** Prefixes of every lab with a state file under the lab root, oldest first (by createdAt). */
export function listLabs(): string[] {
  let names: string[]
  try {
    names = fs.readdirSync(labRoot())
  } catch {
    return []
  }
  return names
    .filter((n) => PREFIX_RE.test(n))
    .map((n) => ({n, t: readState(n)?.createdAt}))
    .filter((x): x is {n: string; t: string} => x.t !== undefined)
    .sort((a, b) => a.t.localeCompare(b.t))
    .map((x) => x.n)
}
