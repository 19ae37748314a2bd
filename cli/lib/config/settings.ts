/**
 * The one table of mesh's settings: for each, its key in a config file, its flag, its
 * environment variable, its type, its default and what it does. The config-file schema, the
 * flags of `mesh daemon run` / `mesh controller start` / the CLI's --socket, the resolution
 * (flag > env > file > default) and `mesh config show` are all derived from it, so a setting is
 * described once.
 *
 * Environment variables are `MESH_` + the flag name in upper case (--state-dir is
 * MESH_STATE_DIR): the four that existed before config files (MESH_SOCKET, MESH_STATE_DIR,
 * MESH_DATA_DIR, MESH_CONTROLLER) already followed that pattern. The daemon and the controller
 * are separate processes, so the --log-level they share is one MESH_LOG_LEVEL, as it is one flag
 * name.
 */
import {z} from 'zod'
import {defaultControllerDataDir, defaultDaemonStateDir, defaultSocketPath} from '../../../shared/paths.js'

export const SECTIONS = ['cli', 'daemon', 'controller'] as const
export type Section = (typeof SECTIONS)[number]

/** Log levels of meshd (pino's, without `silent`: a root daemon must leave a trace). */
export const DAEMON_LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const
/** Log levels of the controller (the same order it always accepted, `silent` included). */
export const CONTROLLER_LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export interface Setting {
  readonly section: Section
  /** camelCase name inside its section, e.g. `logLevel` for `daemon.logLevel`. */
  readonly name: string
  /** The flag (without dashes) of the command(s) that take it. */
  readonly flag: string
  /** Environment variable: MESH_ + the flag name in upper snake case. */
  readonly env: string
  readonly kind: 'string' | 'boolean' | 'integer'
  /** The values allowed, for enumerations. */
  readonly options?: readonly string[]
  /** Validates a value from a file or the environment (flags are also checked by oclif). */
  readonly schema: z.ZodType
  /**
   * The built-in default, or undefined when the program derives it itself (say how in
   * `defaultText`). A function: it may depend on the platform or the user (shared/paths.ts).
   */
  readonly default: () => string | number | boolean | undefined
  /** How --help and `mesh config show` describe the default. */
  readonly defaultText: string
  readonly description: string
}

/** `section.name`, e.g. `daemon.logLevel`. */
export const keyOf = (s: Pick<Setting, 'section' | 'name'>): string => `${s.section}.${s.name}`

const path = z.string({error: 'expected a string'}).min(1, 'expected a non-empty path')
const hostPort = z.string({error: 'expected a string'}).min(1, 'expected HOST:PORT')
const isHttpUrl = (text: string): boolean => {
  try {
    return ['http:', 'https:'].includes(new URL(text).protocol)
  } catch {
    return false
  }
}
const httpUrl = z
  .string({error: 'expected a string'})
  .refine(isHttpUrl, 'expected an http:// or https:// URL')

const setting = (
  section: Section,
  name: string,
  flag: string,
  spec: Omit<Setting, 'section' | 'name' | 'flag' | 'env' | 'schema'> & {schema?: z.ZodType},
): Setting => {
  const schema =
    spec.schema ??
    (spec.options
      ? z.enum(spec.options as [string, ...string[]], {
          error: `expected one of ${spec.options.join(', ')}`,
        })
      : spec.kind === 'boolean'
        ? z.boolean({error: 'expected true or false'})
        : z.string({error: 'expected a string'}))
  return {section, name, flag, env: `MESH_${flag.replaceAll('-', '_').toUpperCase()}`, schema, ...spec}
}

const constant =
  <T>(v: T) =>
  (): T =>
    v
const none = (): undefined => undefined

export const SETTINGS: readonly Setting[] = [
  setting('cli', 'controller', 'controller', {
    kind: 'string',
    schema: httpUrl,
    default: none,
    defaultText: 'for login, the controller last logged in to',
    description: 'controller URL that `mesh login` and `mesh up --auth-key` use',
  }),

  setting('daemon', 'socket', 'socket', {
    kind: 'string',
    schema: path,
    default: defaultSocketPath,
    defaultText: '/run/mesh/meshd.sock',
    description: "unix socket of meshd's local API (meshd listens on it, the CLI connects to it)",
  }),
  setting('daemon', 'stateDir', 'state-dir', {
    kind: 'string',
    schema: path,
    default: defaultDaemonStateDir,
    defaultText: '/var/lib/mesh',
    description: 'keys, credentials, cached netmaps',
  }),
  setting('daemon', 'interfacePrefix', 'interface-prefix', {
    kind: 'string',
    // The rule meshd applies (daemon/main.ts), checked here too so a file names the key.
    schema: z
      .string({error: 'expected a string'})
      .regex(
        /^[a-zA-Z][a-zA-Z0-9_-]{0,11}$/,
        'expected 1-12 letters, digits, dashes or underscores, starting with a letter',
      ),
    default: constant('mesh'),
    defaultText: 'mesh',
    description: 'prefix of the interface names meshd picks',
  }),
  setting('daemon', 'wireguard', 'wireguard', {
    kind: 'string',
    options: ['auto', 'kernel', 'userspace'],
    default: constant('auto'),
    defaultText: 'auto',
    description: 'WireGuard backend: kernel module, wireguard-go, or whichever works',
  }),
  setting('daemon', 'logLevel', 'log-level', {
    kind: 'string',
    options: DAEMON_LOG_LEVELS,
    default: constant('info'),
    defaultText: 'info',
    description: 'log level',
  }),
  setting('daemon', 'downOnExit', 'down-on-exit', {
    kind: 'boolean',
    default: constant(false),
    defaultText: 'false',
    description: 'remove the WireGuard interfaces when meshd stops',
  }),

  setting('controller', 'dataDir', 'data-dir', {
    kind: 'string',
    schema: path,
    default: defaultControllerDataDir,
    defaultText: '/var/lib/mesh-controller as root, else ~/.local/share/mesh/controller',
    description: 'directory for the database and the initial admin password',
  }),
  setting('controller', 'listen', 'listen', {
    kind: 'string',
    schema: hostPort,
    default: constant('127.0.0.1:8080'),
    defaultText: '127.0.0.1:8080',
    description: 'HOST:PORT to listen on; port 0 picks a free port',
  }),
  setting('controller', 'database', 'database', {
    kind: 'string',
    // Which URLs work is the controller's to say (DATABASE_UNSUPPORTED), as for the flag.
    schema: z.string({error: 'expected a string'}).min(1, 'expected a database URL'),
    default: none,
    defaultText: 'sqlite:DATA_DIR/mesh.db',
    description: 'database URL: sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB',
  }),
  setting('controller', 'publicUrl', 'public-url', {
    kind: 'string',
    schema: httpUrl,
    default: none,
    defaultText: 'from the Host header of each request',
    description: 'URL nodes use to reach this controller (put into invites)',
  }),
  setting('controller', 'logLevel', 'log-level', {
    kind: 'string',
    options: CONTROLLER_LOG_LEVELS,
    default: constant('info'),
    defaultText: 'info',
    description: 'log level',
  }),
  setting('controller', 'stunListen', 'stun-listen', {
    kind: 'string',
    schema: hostPort,
    default: none,
    defaultText: 'the listen host, port 3478; a free port when the listen port is 0',
    description: 'UDP HOST:PORT of the STUN server (NAT traversal), or "off"',
  }),
  setting('controller', 'stunAlternate', 'stun-alternate', {
    kind: 'string',
    schema: hostPort,
    default: none,
    defaultText: 'none',
    description:
      'UDP HOST:PORT of the RFC 5780 alternate STUN address: another address and/or port of this host, for mapping and filtering tests',
  }),
  setting('controller', 'discoveryListen', 'discovery-listen', {
    kind: 'string',
    schema: hostPort,
    default: none,
    defaultText: 'the listen host, port 51820; a free port when the listen port is 0',
    description:
      'UDP HOST:PORT of the endpoint-discovery port that observes nodes\' public WireGuard mappings, or "off"',
  }),
  setting('controller', 'trustedProxy', 'trusted-proxy', {
    kind: 'string',
    // Which entries work is the controller's to say (CONFIG_INVALID), as for the flag.
    schema: z.string({error: 'expected a string'}),
    default: none,
    defaultText: 'none (the sender of each request is its source)',
    description:
      'comma-separated addresses or CIDRs of load balancers whose X-Forwarded-For gives the client address (audit, login limits)',
  }),
  setting('controller', 'relayUrl', 'relay-url', {
    kind: 'string',
    schema: httpUrl,
    default: none,
    defaultText: 'none (the built-in relay only dials stand-alone relays)',
    description:
      "URL other relays reach this controller's built-in relay at (its own listener, not a load balancer); replicas on one PostgreSQL mesh their built-in relays through it",
  }),
  setting('controller', 'oidcConfig', 'oidc-config', {
    kind: 'string',
    schema: path,
    default: none,
    defaultText: 'none (password logins only)',
    description:
      'YAML or JSON file of the OpenID Connect issuers people may log in with (`mesh login --oidc`); README: OIDC setup',
  }),
  setting('controller', 'secretsKeyFile', 'secrets-key-file', {
    kind: 'string',
    schema: path,
    default: none,
    defaultText: 'DATA_DIR/secrets.key, made on the first start on SQLite',
    description:
      'file of the key that seals TOTP secrets in the database (32 bytes, base64, mode 0600); the same file on every PostgreSQL replica; keep it with every backup',
  }),
  setting('controller', 'ephemeralTimeout', 'ephemeral-timeout', {
    kind: 'integer',
    schema: z
      .number({error: 'expected a whole number of seconds'})
      .int('expected a whole number of seconds')
      .min(1, 'expected at least 1 (seconds)'),
    default: constant(120),
    defaultText: '120',
    description: 'seconds an ephemeral node may stay offline before it is removed',
  }),
]

/** The setting with this key (`daemon.logLevel`); throws on a typo in our own code. */
export function settingOf(key: string): Setting {
  const s = SETTINGS.find((x) => keyOf(x) === key)
  if (!s) throw new Error(`no such setting: ${key}`)
  return s
}

export const settingsOf = (section: Section): Setting[] => SETTINGS.filter((s) => s.section === section)

/**
 * The schema of a whole config file: strict at every level, so a misspelt key is an error
 * rather than a setting silently ignored. Every key is optional; an empty file is valid.
 */
export const ConfigFileSchema = z.strictObject(
  Object.fromEntries(
    SECTIONS.map((section) => [
      section,
      z
        .strictObject(Object.fromEntries(settingsOf(section).map((s) => [s.name, s.schema.optional()])))
        .optional(),
    ]),
  ),
)
export type ConfigFile = Partial<Record<Section, Record<string, unknown>>>
