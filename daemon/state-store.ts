/**
 * meshd's state dir (default /var/lib/mesh, mode 0700): per joined network its record, its
 * private key and node credential (0600 each) and the last netmap, so a daemon restarted while
 * the controller is down rebuilds its interfaces from disk. Every write is atomic (temp file in
 * the same dir, fsync, rename): a crash leaves the old file or the new one, never half of one.
 *
 * The netmap cache is written coalesced, off the path to the first apply: saveNetmap() only
 * notes the latest netmap, and it is written (asynchronously, in libuv's threads) at most once
 * per netmapWriteMs per network, and not at all when it is the same as the file already holds.
 * The fsync costs 6-14 ms on a loaded machine and used to sit between every netmap frame and its
 * apply. A crash loses at most the last window's netmap (the controller sends a full map on the
 * next connect; principle 2 only needs *a* recent map); a clean stop calls flush(), which writes
 * what is pending. Records, keys, credentials and the owned-interfaces list are still written
 * synchronously: they are rare and a restart depends on them.
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
import {open, rename, rm} from 'node:fs/promises'
import path from 'node:path'
import {z} from 'zod'
import {systemClock, type Clock, type TimerHandle} from '../shared/clock.js'
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

/** writeFileAtomic without blocking the event loop: the same temp + fsync + rename, async. */
export async function writeFileAtomicAsync(file: string, data: string, mode = 0o600): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`)
  try {
    const fh = await open(tmp, 'wx', mode)
    try {
      await fh.writeFile(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, {force: true})
    throw err
  }
}

/** The netmap cache's write window (ms): at most one write per network per window. */
export const NETMAP_WRITE_MS = 500

export interface StateStoreOptions {
  /** Time and timers of the coalesced netmap writes; the system clock by default. */
  clock?: Clock
  /**
   * At most one netmap write per network per this many ms; meshd passes NETMAP_WRITE_MS. 0 (the
   * default): every saveNetmap() writes at once, synchronously (tools and tests that seed a
   * state dir and start a daemon on it).
   */
  netmapWriteMs?: number
  /** A background netmap write failed (the next save tries again). */
  onWriteError?: (err: unknown, file: string) => void
}

/** The coalesced netmap cache of one network; owned by StateStore, never shared. */
interface NetmapSlot {
  /** The newest netmap not written yet (serialised only when written). */
  pending: NetmapFull | undefined
  /** What the file holds (as far as this process wrote it). */
  written: string | undefined
  timer: TimerHandle | undefined
  /** The write in flight, if any. */
  writing: Promise<void> | undefined
  /**
   * The network was deleted: nothing more is written. A write in flight then fails (its temp
   * file went with the directory, so the rename finds nothing) and leaves nothing behind.
   */
  deleted: boolean
}

/** A directory name for a network id: the id itself when it is plain, else its hash. */
const dirName = (id: string): string =>
  /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : createHash('sha256').update(id).digest('hex').slice(0, 32)

export class StateStore {
  private readonly clock: Clock
  private readonly netmapWriteMs: number
  private readonly netmaps = new Map<string, NetmapSlot>()

  constructor(
    readonly dir: string,
    private readonly opts: StateStoreOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock
    this.netmapWriteMs = opts.netmapWriteMs ?? 0
  }

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

  /**
   * Notes a network's latest netmap; it reaches the disk within netmapWriteMs (or at flush()),
   * or at once without a window.
   * The object must not be mutated afterwards (the backend replaces it on every frame).
   */
  saveNetmap(id: string, netmap: NetmapFull): void {
    if (this.netmapWriteMs <= 0) {
      writeFileAtomic(path.join(this.netDir(id), 'netmap.json'), JSON.stringify(netmap))
      return
    }
    let slot = this.netmaps.get(id)
    if (!slot || slot.deleted) {
      slot = {pending: undefined, written: undefined, timer: undefined, writing: undefined, deleted: false}
      this.netmaps.set(id, slot)
    }
    slot.pending = netmap
    this.schedule(id, slot)
  }

  private schedule(id: string, slot: NetmapSlot): void {
    if (slot.timer !== undefined || slot.writing !== undefined || slot.pending === undefined) return
    slot.timer = this.clock.setTimeout(() => {
      slot.timer = undefined
      void this.writeNetmap(id, slot)
    }, this.netmapWriteMs)
  }

  /** Writes the slot's pending netmap (skipped when unchanged); the next one waits a window. */
  private writeNetmap(id: string, slot: NetmapSlot): Promise<void> {
    const netmap = slot.pending
    if (netmap === undefined || slot.deleted) return Promise.resolve()
    slot.pending = undefined
    const json = JSON.stringify(netmap)
    if (json === slot.written) return Promise.resolve()
    const file = path.join(this.netDir(id), 'netmap.json')
    const writing = writeFileAtomicAsync(file, json).then(
      () => {
        slot.written = json
      },
      (err: unknown) => {
        // Not written: unless a newer one came meanwhile, this one is tried again.
        slot.pending ??= netmap
        if (!slot.deleted) this.opts.onWriteError?.(err, file)
      },
    )
    slot.writing = writing
    return writing.finally(() => {
      slot.writing = undefined
      if (!slot.deleted) this.schedule(id, slot)
    })
  }

  /** Writes every pending netmap now, after the writes in flight (a clean stop calls this). */
  async flush(): Promise<void> {
    for (const [id, slot] of [...this.netmaps]) {
      if (slot.timer !== undefined) this.clock.clearTimeout(slot.timer)
      slot.timer = undefined
      await slot.writing
      if (slot.timer !== undefined) this.clock.clearTimeout(slot.timer)
      slot.timer = undefined
      await this.writeNetmap(id, slot)
      if (slot.timer !== undefined) this.clock.clearTimeout(slot.timer)
      slot.timer = undefined
    }
  }

  deleteNetwork(id: string): void {
    const slot = this.netmaps.get(id)
    if (slot) {
      this.netmaps.delete(id)
      slot.deleted = true
      slot.pending = undefined
      if (slot.timer !== undefined) this.clock.clearTimeout(slot.timer)
      slot.timer = undefined
    }
    // Retries: a write in flight may add its temp file between rm's listing and its rmdir.
    rmSync(this.netDir(id), {recursive: true, force: true, maxRetries: 3})
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
