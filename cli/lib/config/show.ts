/**
 * `mesh config show`: the effective settings of each program, their sources and the files
 * looked at, as data (for --json) and as text.
 */
import {renderTable} from '../render/table.js'
import {explicitConfigFile, readerOf} from './index.js'
import {type FileReport, type LoadedFiles, type Reader, loadConfigFiles} from './files.js'
import {resolveSettings} from './resolve.js'
import {type Section, type Setting, settingOf, settingsOf} from './settings.js'

export interface ShownSetting {
  /** Which program uses the value: the CLI's commands, `mesh daemon run`, `mesh controller start`. */
  for: Section
  /** `daemon.logLevel`: the key in a config file. */
  key: string
  /** null: unset; the program derives it (see `default`). */
  value: string | number | boolean | null
  /** `flag --x`, `env MESH_X`, `file PATH (key)` or `default`. */
  source: string
  flag: string
  env: string
  /** The built-in default, described. */
  default: string
}

export interface ShownFile extends FileReport {
  /** cli: read by the CLI's commands; service: by meshd and the controller. */
  reader: Reader
}

export interface ConfigShowResult {
  settings: ShownSetting[]
  files: ShownFile[]
}

/**
 * The settings each program uses: the CLI its controller and meshd's socket (it has no flags
 * here, so the sources are env, file or default); meshd and the controller their sections, as
 * `mesh daemon run` / `mesh controller start` would resolve them started from this shell.
 */
export async function showConfig(
  sections: readonly Section[],
  flags: {config?: string | undefined},
): Promise<ConfigShowResult> {
  const explicit = explicitConfigFile(flags)
  const loaded = new Map<Reader, LoadedFiles>()
  const settings: ShownSetting[] = []
  for (const section of sections) {
    const reader = readerOf(section)
    let files = loaded.get(reader)
    if (!files) {
      files = await loadConfigFiles(reader, {explicit, tolerateUnreadable: true})
      loaded.set(reader, files)
    }
    const used: Setting[] =
      section === 'cli' ? [settingOf('cli.controller'), settingOf('daemon.socket')] : settingsOf(section)
    const resolved = resolveSettings(used, {layers: files.layers})
    resolved.forEach((r, i) => {
      const s = used[i]!
      settings.push({
        for: section,
        key: r.key,
        value: r.value ?? null,
        source: r.source,
        flag: `--${s.flag}`,
        env: s.env,
        default: s.defaultText,
      })
    })
  }
  const files = [...loaded].flatMap(([reader, l]) => l.files.map((f) => ({reader, ...f})))
  return {settings, files}
}

const PROGRAM: Record<Section, string> = {
  cli: 'the mesh CLI',
  daemon: 'mesh daemon run (meshd)',
  controller: 'mesh controller start',
}

/** The report as text: one table per program, then the files. */
export function configShowText(r: ConfigShowResult): string {
  const out: string[] = []
  for (const section of [...new Set(r.settings.map((s) => s.for))]) {
    out.push(`Settings of ${PROGRAM[section]}:`)
    out.push(
      renderTable(
        r.settings.filter((s) => s.for === section),
        [
          {header: 'KEY', get: (s) => s.key},
          {header: 'VALUE', get: (s) => (s.value === null ? `(${s.default})` : String(s.value))},
          {header: 'SOURCE', get: (s) => s.source},
        ],
      ),
      '',
    )
  }
  // One row per file and outcome: /etc/mesh/config.yaml is usually read alike by both readers.
  const rows = new Map<string, {file: string; readers: string[]; role: string; status: string}>()
  for (const f of r.files) {
    const status = f.reason ? `${f.status}: ${f.reason}` : f.status
    const id = JSON.stringify([f.file, f.role, status])
    const row = rows.get(id) ?? {file: f.file, readers: [], role: f.role, status}
    row.readers.push(f.reader === 'cli' ? 'CLI' : 'meshd, controller')
    rows.set(id, row)
  }
  out.push('Files:')
  out.push(
    renderTable(
      [...rows.values()],
      [
        {header: 'FILE', get: (f) => f.file},
        {header: 'READ BY', get: (f) => f.readers.join(', ')},
        {header: 'AS', get: (f) => f.role},
        {header: 'STATUS', get: (f) => f.status},
      ],
    ),
  )
  return out.join('\n')
}
