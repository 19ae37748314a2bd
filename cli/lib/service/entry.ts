/**
 * The command line that starts this very `mesh`: what a service unit's ExecStart (or a launchd
 * ProgramArguments) must hold so the service runs the binary that installed it.
 */
import fs from 'node:fs'
import path from 'node:path'
import {isSea} from 'node:sea'

export interface EntryProbe {
  /** process.execPath: node, or the single executable itself. */
  execPath: string
  /** process.argv[1]: the script node runs (bin/mesh.js); unused for a single executable. */
  script: string | undefined
  /** node:sea isSea(): true when this process is a single executable application. */
  sea: boolean
  /** Resolves symlinks; fs.realpathSync by default, injectable for tests. */
  realpath?: (p: string) => string
}

/** What this process is: node + bin/mesh.js today, one file (dist/mesh) as a single executable. */
export function currentEntryProbe(): EntryProbe {
  return {execPath: process.execPath, script: process.argv[1], sea: isSea()}
}

/**
 * The argv prefix that starts this `mesh` again: [execPath] for a single executable,
 * [execPath, script] under node. Both are absolute and free of symlinks, so the unit keeps
 * working when the shell's PATH or an npm bin link changes, and ProtectHome= can be judged on
 * where the files really are.
 */
export function meshEntry(probe: EntryProbe = currentEntryProbe()): string[] {
  const real = probe.realpath ?? ((p: string) => fs.realpathSync(p))
  if (probe.sea) return [real(path.resolve(probe.execPath))]
  if (probe.script === undefined || probe.script === '')
    throw new Error('cannot tell which script runs mesh: process.argv[1] is empty')
  return [real(path.resolve(probe.execPath)), real(path.resolve(probe.script))]
}
