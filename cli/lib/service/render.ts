/**
 * What `mesh daemon|controller install|uninstall` print for people: one line per file written
 * and command run (or that would be, with --dry-run), then where things are.
 */
import type {InstallResult, UninstallResult} from './install.js'

/** A command as one would type it in a POSIX shell. */
export function shellLine(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`))
    .join(' ')
}

const ACCOUNT_COMMANDS = new Set(['groupadd', 'useradd', 'dseditgroup', 'install'])

export function installLines(res: InstallResult): string[] {
  const ran = (c: readonly string[]): string => `${res.dryRun ? 'would run' : 'ran'}: ${shellLine(c)}`
  // Accounts and directories come first in the flow, the unit file next, the manager last.
  const first = res.commands.filter((c) => ACCOUNT_COMMANDS.has(c[0] ?? ''))
  const then = res.commands.filter((c) => !ACCOUNT_COMMANDS.has(c[0] ?? ''))
  const lines = first.map(ran)
  for (const f of res.files) {
    if (f.action === 'unchanged') lines.push(`${f.path} is up to date`)
    else if (res.dryRun) lines.push(`would write ${f.path}:`, '', res.unit)
    else lines.push(`wrote ${f.path}`)
  }
  return [...lines, ...then.map(ran)]
}

export function uninstallLines(res: UninstallResult): string[] {
  if (!res.wasInstalled) return [`${res.unitPath} does not exist: nothing to uninstall`]
  const lines = res.files
    .filter((f) => f.action === 'removed')
    .map((f) => `${res.dryRun ? 'would remove' : 'removed'} ${f.path}`)
  for (const c of res.commands) lines.push(`${res.dryRun ? 'would run' : 'ran'}: ${shellLine(c)}`)
  for (const k of res.kept) lines.push(`kept ${k}`)
  return lines
}
