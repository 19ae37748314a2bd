/**
 * What commands use of the configuration: the flags derived from the settings table, the
 * --config flag, and one call that loads the files a command reads and resolves its settings.
 */
import {Flags} from '@oclif/core'
import {type LoadedFiles, type Reader, loadConfigFiles} from './files.js'
import {type Resolved, resolveSettings, valuesOf} from './resolve.js'
import {type Section, type Setting, settingOf, settingsOf} from './settings.js'

export {SYSTEM_CONFIG_FILE} from './files.js'
export type {Resolved} from './resolve.js'

/** `--config FILE`: read this file only (also MESH_CONFIG_FILE). */
export const configFlag = () =>
  Flags.string({
    description:
      'read settings from this file only, instead of the usual places [env: MESH_CONFIG_FILE] (see `mesh config show`)',
    helpValue: 'FILE',
    helpGroup: 'GLOBAL',
  })

/** The explicit config file: --config, else MESH_CONFIG_FILE (blank counts as unset). */
export const explicitConfigFile = (
  flags: {config?: string | undefined},
  env: Readonly<Record<string, string | undefined>> = process.env,
): string | undefined => flags.config ?? (env.MESH_CONFIG_FILE?.trim() || undefined)

/**
 * The flags of settings, one function per type so each command's flags stay typed. They carry
 * no oclif `default:` or `env:`: resolveSettings applies those itself so that it can tell which
 * source won; --help still shows both in the description.
 */
export const settingFlag = {
  string: (key: string, opts: {helpGroup?: string; char?: 'c'} = {}) => {
    const s = ofKind(key, 'string')
    return Flags.string({
      ...flagProps(s, opts),
      ...(s.options && {options: [...s.options]}),
      ...(opts.char !== undefined && {char: opts.char}),
    })
  },
  boolean: (key: string) => Flags.boolean({...flagProps(ofKind(key, 'boolean'), {}), allowNo: true}),
  /** Every integer setting is a count of at least 1 (today: seconds). */
  integer: (key: string) => Flags.integer({...flagProps(ofKind(key, 'integer'), {}), min: 1}),
}

function ofKind(key: string, kind: Setting['kind']): Setting {
  const s = settingOf(key)
  if (s.kind !== kind) throw new Error(`${key} is a ${s.kind} setting, not ${kind}`)
  return s
}

const flagProps = (s: Setting, opts: {helpGroup?: string}) => ({
  description: `${s.description} [default: ${s.defaultText}; env: ${s.env}; config: ${s.section}.${s.name}]`,
  ...(opts.helpGroup !== undefined && {helpGroup: opts.helpGroup}),
})

/** Which reader a section's settings are meant for: the CLI's, or a service's. */
export const readerOf = (section: Section): Reader => (section === 'cli' ? 'cli' : 'service')

export interface SectionConfig {
  /** Every setting of the section with its source, in table order. */
  resolved: Resolved[]
  /** The values by name within the section (`logLevel`). */
  values: Record<string, Resolved['value']>
  files: LoadedFiles['files']
}

/**
 * Loads the files the section's program reads (the services': /etc/mesh/config.yaml; see
 * files.ts) and resolves every setting of the section: flag > env > file > default.
 */
export async function loadSection(
  section: Exclude<Section, 'cli'>,
  flags: Readonly<Record<string, unknown>> & {config?: string | undefined},
): Promise<SectionConfig> {
  const loaded = await loadConfigFiles('service', {explicit: explicitConfigFile(flags)})
  const resolved = resolveSettings(settingsOf(section), {flags, layers: loaded.layers})
  return {resolved, values: valuesOf(resolved), files: loaded.files}
}

/** The CLI's files (current directory, then /etc/mesh/config.yaml; or the explicit one). */
export const loadCliFiles = (flags: {config?: string | undefined}): Promise<LoadedFiles> =>
  loadConfigFiles('cli', {explicit: explicitConfigFile(flags)})

/** One setting as the CLI resolves it, from files loaded with loadCliFiles. */
export function cliSetting(
  key: 'cli.controller' | 'daemon.socket',
  flags: Readonly<Record<string, unknown>>,
  files: LoadedFiles | undefined,
): Resolved {
  const [r] = resolveSettings([settingOf(key)], {flags, layers: files?.layers ?? []})
  return r!
}
