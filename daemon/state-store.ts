/**
 * meshd's state dir (default /var/lib/mesh, mode 0700): per joined network its record, its
 * private key and node credential (0600 each) and the last netmap, so a daemon restarted while
 * the controller is down rebuilds its interfaces from disk. Every write is atomic (temp file in
 * the same dir, fsync, rename): a crash leaves the old file or the new one, never half of one.
 */
import {createHash, randomBytes} from 'node:crypto'
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs'
import path from 'node:path'
import {z} from 'zod'
import {InterfaceNameSchema, NetworkStatusSchema} from '../shared/protocol/local-api.js'
import type {NetmapFull} from '../shared/protocol/netmap.js'
import {parseServerFrame} from './netmap/parse.js'

/**
 * What the daemon keeps per joined network: the durable part of what `mesh status` reports
 * (the live parts — connection, netmap version, errors, peers — are left out), plus when it
 * joined. `address` is what registration returned; the netmap's self wins later.
 */
export const NetworkRecordSchema = NetworkStatusSchema.pick({
  id: true,
  name: true,
  cidr: true,
  controller: true,
  interface: true,
  nodeId: true,
  nodeName: true,
  nodeStatus: true,
  address: true,
  publicKey: true,
  listenPort: true,
  up: true,
}).extend({joinedAt: z.string()})
export type NetworkRecord = z.infer<typeof NetworkRecordSchema>

const DaemonStateSchema = z.object({
  /** Interfaces this daemon created and has not removed: what a restart may clean up. */
  ownedInterfaces: z.array(InterfaceNameSchema),
})

export interface LoadedNetwork {
  record: NetworkRecord
  privateKey: string
  credential: string
  netmap: NetmapFull | undefined
}

/** temp + fsync + rename in the same directory. */
export function writeFileAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`)
  const fd = openSync(tmp, 'wx', mode)
  try {
    try {
      writeSync(fd, data)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
  } catch (err) {
    // The temp file may hold a private key or credential: never leave it behind.
    rmSync(tmp, {force: true})
    throw err
  }
}

/** A directory name for a network id: the id itself when it is plain, else its hash. */
const dirName = (id: string): string =>
  /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : createHash('sha256').update(id).digest('hex').slice(0, 32)

export class StateStore {
  constructor(readonly dir: string) {}

  init(): void {
    mkdirSync(path.join(this.dir, 'networks'), {recursive: true, mode: 0o700})
    chmodSync(this.dir, 0o700)
  }

  private netDir(id: string): string {
    return path.join(this.dir, 'networks', dirName(id))
  }

  /** Networks on disk; a corrupt one is reported through `onBad` and skipped, not fatal. */
  loadNetworks(onBad: (dir: string, err: unknown) => void): LoadedNetwork[] {
    const out: LoadedNetwork[] = []
    for (const entry of readdirSync(path.join(this.dir, 'networks'), {withFileTypes: true})) {
      if (!entry.isDirectory()) continue
      const dir = path.join(this.dir, 'networks', entry.name)
      try {
        const record = NetworkRecordSchema.parse(
          JSON.parse(readFileSync(path.join(dir, 'network.json'), 'utf8')),
        )
        const privateKey = readFileSync(path.join(dir, 'private.key'), 'utf8').trim()
        const credential = readFileSync(path.join(dir, 'credential'), 'utf8').trim()
        let netmap: NetmapFull | undefined
        try {
          // Peer by peer, as a live frame: one bad peer in the cache does not cost the others.
          const cached = parseServerFrame(
            JSON.parse(readFileSync(path.join(dir, 'netmap.json'), 'utf8')),
          ).frame
          netmap = cached?.type === 'full' ? cached : undefined
        } catch {
          netmap = undefined // no cache yet, or unreadable: the controller sends a full map
        }
        out.push({record, privateKey, credential, netmap})
      } catch (err) {
        onBad(dir, err)
      }
    }
    return out
  }

  /** Writes a newly joined network: secrets first, the record last (it marks the join done). */
  createNetwork(record: NetworkRecord, privateKey: string, credential: string): void {
    const dir = this.netDir(record.id)
    mkdirSync(dir, {recursive: true, mode: 0o700})
    writeFileAtomic(path.join(dir, 'private.key'), `${privateKey}\n`, 0o600)
    writeFileAtomic(path.join(dir, 'credential'), `${credential}\n`, 0o600)
    this.saveRecord(record)
  }

  /** Replaces the network's private key (`mesh rotate-key`), atomically, 0600. */
  savePrivateKey(id: string, privateKey: string): void {
    writeFileAtomic(path.join(this.netDir(id), 'private.key'), `${privateKey}\n`, 0o600)
  }

  saveRecord(record: NetworkRecord): void {
    writeFileAtomic(path.join(this.netDir(record.id), 'network.json'), `${JSON.stringify(record, null, 2)}\n`)
  }

  saveNetmap(id: string, netmap: NetmapFull): void {
    writeFileAtomic(path.join(this.netDir(id), 'netmap.json'), JSON.stringify(netmap))
  }

  deleteNetwork(id: string): void {
    rmSync(this.netDir(id), {recursive: true, force: true})
  }

  ownedInterfaces(): string[] {
    try {
      return DaemonStateSchema.parse(JSON.parse(readFileSync(path.join(this.dir, 'daemon.json'), 'utf8')))
        .ownedInterfaces
    } catch {
      return []
    }
  }

  setOwnedInterfaces(names: Iterable<string>): void {
    const ownedInterfaces = [...new Set(names)].sort()
    writeFileAtomic(path.join(this.dir, 'daemon.json'), `${JSON.stringify({ownedInterfaces}, null, 2)}\n`)
  }
}
