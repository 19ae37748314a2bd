/**
 * A ServiceSystem for tests: files live under a temp root dir (so /etc/systemd/system/meshd.service
 * is ROOT/etc/systemd/system/meshd.service, real files with real modes), accounts live in memory,
 * and every command is recorded and answered like the real program would. Test-only.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {writeAtomic, type CommandResult, type ServiceSystem} from '../system.js'

export interface FakeSystemOptions {
  platform?: NodeJS.Platform
  root?: boolean
  systemd?: boolean
  groups?: string[]
  users?: string[]
  /** Paths a user outside owner and group cannot read (with every path below them). */
  private?: string[]
  /** Commands (joined with spaces, prefix match) that fail with exit 1 and this stderr. */
  fail?: Record<string, string>
  /** launchd jobs loaded at the start. */
  loaded?: string[]
}

export class FakeSystem implements ServiceSystem {
  readonly dir: string
  readonly platform: NodeJS.Platform
  readonly groups: Set<string>
  readonly users: Set<string>
  readonly loaded: Set<string>
  /** Every command run, queries included, in order. */
  readonly ran: string[][] = []

  constructor(private readonly opts: FakeSystemOptions = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-service-'))
    this.platform = opts.platform ?? 'linux'
    this.groups = new Set(opts.groups ?? [])
    this.users = new Set(opts.users ?? [])
    this.loaded = new Set(opts.loaded ?? [])
  }

  /** Where a host path lives in the temp root. */
  at(file: string): string {
    return path.join(this.dir, file)
  }

  cleanup(): void {
    fs.rmSync(this.dir, {recursive: true, force: true})
  }

  /** Every file under the root, as host paths, sorted. */
  files(): string[] {
    const walk = (d: string): string[] =>
      fs
        .readdirSync(d, {withFileTypes: true})
        .flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]))
    return walk(this.dir)
      .map((f) => `/${path.relative(this.dir, f)}`)
      .sort()
  }

  isRoot = (): boolean => this.opts.root ?? true
  systemdBooted = (): boolean => this.opts.systemd ?? true

  readFile = (file: string): string | undefined =>
    fs.existsSync(this.at(file)) ? fs.readFileSync(this.at(file), 'utf8') : undefined

  writeFile = (file: string, text: string, mode: number): void => writeAtomic(this.at(file), text, mode)

  removeFile = (file: string): boolean => {
    if (!fs.existsSync(this.at(file))) return false
    fs.unlinkSync(this.at(file))
    return true
  }

  readableByOthers = (file: string): boolean =>
    !(this.opts.private ?? []).some((p) => file === p || file.startsWith(`${p}/`))

  run = async (cmd: string, args: string[]): Promise<CommandResult> => {
    const argv = [cmd, ...args]
    this.ran.push(argv)
    const line = argv.join(' ')
    for (const [prefix, stderr] of Object.entries(this.opts.fail ?? {}))
      if (line.startsWith(prefix)) return {code: 1, stdout: '', stderr}
    const ok = {code: 0, stdout: '', stderr: ''}
    const no = (code = 2): CommandResult => ({code, stdout: '', stderr: ''})
    const name = args.at(-1) ?? ''
    switch (cmd) {
      case 'getent':
        return (args[0] === 'group' ? this.groups : this.users).has(name) ? ok : no()
      case 'dscl':
        return this.groups.has(name.replace('/Groups/', '')) ? ok : no(56)
      case 'groupadd':
      case 'dseditgroup':
        if (this.groups.has(name)) return no(9)
        this.groups.add(name)
        return ok
      case 'groupdel':
        return this.groups.delete(name) ? ok : no(6)
      case 'useradd':
        if (this.users.has(name)) return no(9)
        this.users.add(name)
        this.groups.add(name) // --user-group
        return ok
      case 'userdel':
        this.groups.delete(name)
        return this.users.delete(name) ? ok : no(6)
      case 'launchctl':
        if (args[0] === 'print') return this.loaded.has(name.replace('system/', '')) ? ok : no(113)
        if (args[0] === 'bootout') return this.loaded.delete(name.replace('system/', '')) ? ok : no(3)
        if (args[0] === 'bootstrap') this.loaded.add(path.basename(name, '.plist'))
        return ok
      default:
        return ok // systemctl, install -d
    }
  }
}
