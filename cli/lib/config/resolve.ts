/**
 * Resolves each setting to one value and says where it came from: a flag beats the environment,
 * which beats config files (in the order given), which beat the built-in default. Pure: flags,
 * environment and loaded files come in as arguments.
 */
import {MeshError} from '../../../shared/errors.js'
import type {ConfigLayer} from './files.js'
import {type Setting, keyOf} from './settings.js'

/** A setting's effective value and its source, as `mesh config show` prints them. */
export interface Resolved {
  /** `daemon.logLevel` */
  readonly key: string
  /** undefined: no value; the program derives it (see the setting's defaultText). */
  readonly value: string | number | boolean | undefined
  /** `flag --log-level`, `env MESH_LOG_LEVEL`, `file /etc/mesh/config.yaml (daemon.logLevel)` or `default`. */
  readonly source: string
}

export interface ResolveInput {
  /** Parsed flags by flag name; undefined means not given. */
  readonly flags?: Readonly<Record<string, unknown>>
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Highest precedence first. */
  readonly layers?: readonly ConfigLayer[]
}

/** Resolves `settings`; an invalid environment value is CONFIG_INVALID naming the variable. */
export function resolveSettings(settings: readonly Setting[], input: ResolveInput): Resolved[] {
  const env = input.env ?? process.env
  return settings.map((s): Resolved => {
    const key = keyOf(s)
    const flag = input.flags?.[s.flag]
    if (flag !== undefined) return {key, value: flag as Resolved['value'], source: `flag --${s.flag}`}
    const text = env[s.env]?.trim()
    // An empty variable counts as unset, as oclif treated it when it read these variables itself.
    if (text) return {key, value: fromEnv(s, text), source: `env ${s.env}`}
    for (const layer of input.layers ?? []) {
      const value = layer.data[s.section]?.[s.name]
      if (value !== undefined)
        return {
          key,
          value: value as Resolved['value'],
          source: `file ${layer.file} (${layer.keyPrefix}${key})`,
        }
    }
    return {key, value: s.default(), source: 'default'}
  })
}

/** The values of resolved settings by their name within the section (`logLevel`). */
export function valuesOf(resolved: readonly Resolved[]): Record<string, Resolved['value']> {
  return Object.fromEntries(resolved.map((r) => [r.key.slice(r.key.indexOf('.') + 1), r.value]))
}

const TRUE = ['1', 'true', 'yes', 'y', 'on']
const FALSE = ['0', 'false', 'no', 'n', 'off']

/** Environment text to the setting's type, checked by its schema. */
function fromEnv(s: Setting, text: string): Resolved['value'] {
  let value: unknown = text
  if (s.kind === 'boolean') {
    const t = text.toLowerCase()
    value = TRUE.includes(t) ? true : FALSE.includes(t) ? false : text
    if (typeof value !== 'boolean') throw badEnv(s, 'expected true or false (also 1/0, yes/no, y/n, on/off)')
  } else if (s.kind === 'integer') {
    value = /^-?\d+$/.test(text) ? Number(text) : text
  }
  const parsed = s.schema.safeParse(value)
  if (!parsed.success) throw badEnv(s, parsed.error.issues[0]?.message ?? 'invalid value')
  return parsed.data as Resolved['value']
}

const badEnv = (s: Setting, why: string): MeshError =>
  new MeshError('CONFIG_INVALID', {
    message: `${s.env}: ${why}`,
    hint: `fix or unset ${s.env}; \`mesh config show\` prints every setting and where it comes from`,
  })
