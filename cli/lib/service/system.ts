/**
 * The one door through which `mesh daemon|controller install|uninstall` touch the host: files
 * under /etc and /Library, systemctl/launchctl, groupadd/useradd. Tests pass a fake (see
 * testing/fake-system.ts) that works in a temp root dir; --dry-run wraps the host in a recorder.
 */
import {execFile} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export interface CommandResult {
  code: number
  stdout: string
  stderr: string
}

export interface ServiceSystem {
  readonly platform: NodeJS.Platform
  /** Effective uid 0. */
  isRoot(): boolean
  /** sd_booted(3): systemd is PID 1 when /run/systemd/system exists. */
  systemdBooted(): boolean
  /** The file's text, undefined when it does not exist. */
  readFile(file: string): string | undefined
  /** Replaces the file atomically (temp file + rename) with this text and mode. */
  writeFile(file: string, text: string, mode: number): void
  /** Removes the file; false when it was not there. */
  removeFile(file: string): boolean
  /**
   * Whether a user who is neither the owner nor in the group may pass this directory (o+x) or
   * read this file (o+r); a missing path counts as no. For the controller's user.
   */
  readableByOthers(file: string): boolean
  /** Runs a program (no shell) and reports its exit code; never throws for a non-zero exit. */
  run(cmd: string, args: string[]): Promise<CommandResult>
}

/** The real host. */
export function hostSystem(): ServiceSystem {
  return {
    platform: process.platform,
    isRoot: () => process.getuid?.() === 0,
    systemdBooted: () => fs.existsSync('/run/systemd/system'),
    readFile: (file) => {
      try {
        return fs.readFileSync(file, 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
    },
    writeFile: (file, text, mode) => writeAtomic(file, text, mode),
    removeFile: (file) => {
      try {
        fs.unlinkSync(file)
        return true
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
        throw err
      }
    },
    readableByOthers: (file) => {
      try {
        const st = fs.statSync(file)
        return (st.mode & (st.isDirectory() ? 0o001 : 0o004)) !== 0
      } catch {
        return false
      }
    },
    run: (cmd, args) => runCommand(cmd, args),
  }
}

/** Writes beside the target and renames over it, so a crash leaves the old file or the new one. */
export function writeAtomic(file: string, text: string, mode: number): void {
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o755})
  const tmp = `${file}.mesh-${process.pid}.tmp`
  try {
    fs.writeFileSync(tmp, text, {mode})
    fs.chmodSync(tmp, mode) // the umask may have narrowed it
    fs.renameSync(tmp, file)
  } catch (err) {
    fs.rmSync(tmp, {force: true})
    throw err
  }
}

/** Runs without a shell, bounded to 60 s (systemctl start waits for the unit to start). */
export function runCommand(cmd: string, args: string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, {timeout: 60_000, encoding: 'utf8'}, (err, stdout, stderr) => {
      if (!err) return resolve({code: 0, stdout, stderr})
      const e = err as NodeJS.ErrnoException & {code?: number | string}
      // ENOENT: the program is missing (no systemctl); report it as the shell would, 127.
      const code = typeof e.code === 'number' ? e.code : e.code === 'ENOENT' ? 127 : 1
      resolve({code, stdout, stderr: stderr || e.message})
    })
  })
}

/** One change a dry run would have made. */
export type PlannedChange =
  | {kind: 'write'; path: string; mode: number; text: string}
  | {kind: 'remove'; path: string}
  | {kind: 'run'; command: string[]}

/** Programs whose exit code only reads state; a dry run still runs them to plan truthfully. */
const QUERIES: readonly string[][] = [
  ['getent'],
  ['systemctl', 'is-active'],
  ['systemctl', 'is-enabled'],
  ['launchctl', 'print'],
  ['dscl', '.', '-read'],
]

/**
 * The host for reading, a notebook for writing: reads and queries go through, every change is
 * recorded in `planned` and reported as done. `mesh ... install --dry-run` runs the real install
 * flow on this, so what it prints is exactly what install would do.
 */
export function dryRunSystem(inner: ServiceSystem): ServiceSystem & {planned: PlannedChange[]} {
  const planned: PlannedChange[] = []
  const written = new Map<string, string | undefined>()
  return {
    planned,
    platform: inner.platform,
    isRoot: () => inner.isRoot(),
    systemdBooted: () => inner.systemdBooted(),
    readFile: (file) => (written.has(file) ? written.get(file) : inner.readFile(file)),
    writeFile: (file, text, mode) => {
      written.set(file, text)
      planned.push({kind: 'write', path: file, mode, text})
    },
    readableByOthers: (file) => inner.readableByOthers(file),
    removeFile: (file) => {
      const existed = (written.has(file) ? written.get(file) : inner.readFile(file)) !== undefined
      written.set(file, undefined)
      if (existed) planned.push({kind: 'remove', path: file})
      return existed
    },
    run: async (cmd, args) => {
      const argv = [cmd, ...args]
      if (QUERIES.some((q) => q.every((w, i) => argv[i] === w))) return inner.run(cmd, args)
      planned.push({kind: 'run', command: argv})
      return {code: 0, stdout: '', stderr: ''}
    },
  }
}
