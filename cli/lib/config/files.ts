/**
 * Finding, reading and validating config files. Two readers, because two kinds of program read
 * them:
 *
 * - the CLI (what a person types): cosmiconfig searches the current directory for `.meshrc`,
 *   `.meshrc.{json,yaml,yml,js,cjs,mjs}`, `mesh.config.{js,cjs,mjs}` or the `mesh` key of
 *   package.json, and /etc/mesh/config.yaml is read below it, so the CLI finds the socket a
 *   system-configured meshd listens on;
 * - the services (`mesh daemon run`, `mesh controller start`, run as root or as their own user by
 *   systemd): only /etc/mesh/config.yaml. They never look in the current directory (a `.meshrc`
 *   left in whatever directory root happens to start in must not move meshd's socket or state
 *   dir).
 *
 * /etc/mesh/config.yaml is read the same way by both: YAML or JSON only (no code from a config
 * file runs in a root process, and no cosmiconfig `$import` pulls in a second file past the
 * checks), and refused when a user other than root or the reader could change it (see
 * `checkOwnership`), so `sudo mesh up` cannot be steered by it either.
 *
 * MESH_CONFIG_FILE (or --config) names one file instead, for either kind; tests use it.
 * Validation happens here too, so every error names the file and the key.
 */
import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import type {z} from 'zod'
import {MeshError} from '../../../shared/errors.js'
import {ConfigFileSchema, type ConfigFile, SECTIONS, settingsOf, type Section} from './settings.js'

/** Where meshd and the controller read their settings; the CLI reads it below its own. */
export const SYSTEM_CONFIG_FILE = '/etc/mesh/config.yaml'

/**
 * Where the CLI looks in the current directory, in cosmiconfig's order (package.json first).
 * Not the `.ts` forms (they need a TypeScript loader the single binary does not carry) nor
 * `.config/meshrc*` (kept to the places the README names).
 */
export const SEARCH_PLACES = [
  'package.json',
  '.meshrc',
  '.meshrc.json',
  '.meshrc.yaml',
  '.meshrc.yml',
  '.meshrc.js',
  '.meshrc.cjs',
  '.meshrc.mjs',
  'mesh.config.js',
  'mesh.config.cjs',
  'mesh.config.mjs',
] as const

/** One file that supplies settings, validated. */
export interface ConfigLayer {
  readonly file: string
  /** How keys are named in messages and sources: `mesh.` in package.json, else empty. */
  readonly keyPrefix: string
  readonly data: ConfigFile
}

/** What was looked at, for `mesh config show`. */
export interface FileReport {
  readonly file: string
  /** explicit: MESH_CONFIG_FILE/--config; search: found in the current directory; system: /etc/mesh. */
  readonly role: 'explicit' | 'search' | 'system'
  readonly status: 'loaded' | 'absent' | 'unreadable'
  readonly reason?: string
}

export interface LoadedFiles {
  /** Highest precedence first. */
  readonly layers: ConfigLayer[]
  readonly files: FileReport[]
}

/** Who reads: the CLI's commands, or a service (meshd, the controller). */
export type Reader = 'cli' | 'service'

export interface LoadOptions {
  /** --config or MESH_CONFIG_FILE: this file only. */
  explicit?: string | undefined
  /** Default: process.cwd(). */
  cwd?: string
  /** For tests: another system file. */
  systemFile?: string
  /**
   * An unreadable system file (EACCES) is reported and skipped instead of failing. The CLI
   * always skips (a user may not read root's mode-0600 file); `mesh config show` uses it for the
   * services.
   */
  tolerateUnreadable?: boolean
}

const invalid = (message: string, detail?: unknown): MeshError =>
  new MeshError('CONFIG_FILE_INVALID', {message, ...(detail !== undefined && {detail})})

/** Loads the files `reader` reads, highest precedence first; throws CONFIG_FILE_INVALID. */
export async function loadConfigFiles(reader: Reader, opts: LoadOptions = {}): Promise<LoadedFiles> {
  const systemFile = opts.systemFile ?? SYSTEM_CONFIG_FILE
  if (opts.explicit !== undefined) {
    const file = path.resolve(opts.cwd ?? process.cwd(), opts.explicit)
    const layer =
      reader === 'service' ? await readStrictFile(file, {mustExist: true}) : await readCliFile(file)
    return {layers: layer ? [layer] : [], files: [{file, role: 'explicit', status: 'loaded'}]}
  }
  const layers: ConfigLayer[] = []
  const files: FileReport[] = []
  if (reader === 'cli') {
    const found = await searchCwd(opts.cwd ?? process.cwd())
    if (found) {
      layers.push(found)
      files.push({file: found.file, role: 'search', status: 'loaded'})
    }
  }
  try {
    // Read the same way by everyone: what the CLI takes from it is what meshd would accept.
    const layer = await readStrictFile(systemFile, {mustExist: false})
    if (layer) layers.push(layer)
    files.push({file: systemFile, role: 'system', status: layer ? 'loaded' : 'absent'})
  } catch (err) {
    if (!(err instanceof UnreadableError) || (reader === 'service' && !opts.tolerateUnreadable)) throw err
    files.push({file: systemFile, role: 'system', status: 'unreadable', reason: err.reason})
  }
  return {layers, files}
}

/** EACCES and the like on a system file that exists: the CLI skips it; a service fails. */
class UnreadableError extends MeshError {
  constructor(
    file: string,
    readonly reason: string,
  ) {
    super('CONFIG_FILE_INVALID', {message: `${file}: cannot read: ${reason}`})
  }
}

/**
 * cosmiconfig's search in one directory (searchStrategy 'none': parent directories are not
 * searched, so a `.meshrc` someone left in /tmp does not configure every user below it).
 * cosmiconfig itself is loaded only when one of the places exists: it costs about 35 ms of
 * start-up, which `mesh status` should not pay in a directory with no config.
 */
async function searchCwd(cwd: string): Promise<ConfigLayer | undefined> {
  const present = await Promise.all(
    SEARCH_PLACES.map((p) =>
      p === 'package.json' ? packageJsonHasMesh(path.join(cwd, p)) : exists(path.join(cwd, p)),
    ),
  )
  if (!present.some(Boolean)) return undefined
  const {cosmiconfig} = await loadCosmiconfig()
  const explorer = cosmiconfig('mesh', {
    searchPlaces: [...SEARCH_PLACES],
    searchStrategy: 'none',
    cache: false,
    loaders: YAML_LOADERS,
  })
  let result: Awaited<ReturnType<typeof explorer.search>>
  try {
    result = await explorer.search(cwd)
  } catch (err) {
    throw parseFailure(err, undefined)
  }
  if (!result) return undefined
  return validate(result.filepath, result.config ?? {})
}

/**
 * Whether a package.json holds a `mesh` key: only then is it a config (cosmiconfig skips it
 * otherwise), and most directories with a package.json (every Node project) have none, so they
 * should not cost cosmiconfig's load. One that cannot be read or parsed is left to cosmiconfig,
 * which says what is wrong with it.
 */
async function packageJsonHasMesh(file: string): Promise<boolean> {
  let text: string
  try {
    const st = await fs.stat(file)
    if (!st.isFile()) return false
    if (st.size > 4 * 1024 * 1024) return true
    text = await fs.readFile(file, 'utf8')
  } catch {
    return false
  }
  try {
    const json = JSON.parse(text) as unknown
    return typeof json === 'object' && json !== null && Object.hasOwn(json, 'mesh')
  } catch {
    return true
  }
}

/** A file named to the CLI with --config or MESH_CONFIG_FILE: any format cosmiconfig reads. */
async function readCliFile(file: string): Promise<ConfigLayer | undefined> {
  try {
    await fs.access(file, fsConstants.R_OK)
  } catch (err) {
    return missingOrUnreadable(file, err, true)
  }
  const {cosmiconfig} = await loadCosmiconfig()
  const explorer = cosmiconfig('mesh', {cache: false, loaders: YAML_LOADERS})
  let result: Awaited<ReturnType<typeof explorer.load>>
  try {
    result = await explorer.load(file)
  } catch (err) {
    throw parseFailure(err, file)
  }
  return validate(file, result?.config ?? {})
}

/**
 * Reads /etc/mesh/config.yaml, or a file named to a service: YAML or JSON only, checked for
 * ownership and mode on the same open descriptor it is read from (no window between the check
 * and the read). A missing system file costs one failed open: cosmiconfig is not loaded then.
 */
async function readStrictFile(file: string, opts: {mustExist: boolean}): Promise<ConfigLayer | undefined> {
  const ext = path.extname(file).toLowerCase()
  if (!['.yaml', '.yml', '.json', ''].includes(ext))
    throw invalid(
      `${file}: meshd and the controller read YAML or JSON config files only (.yaml, .yml, .json)`,
    )
  let handle: fs.FileHandle
  try {
    handle = await fs.open(file, 'r')
  } catch (err) {
    return missingOrUnreadable(file, err, opts.mustExist)
  }
  let text: string
  try {
    const st = await handle.stat()
    if (!st.isFile()) throw invalid(`${file}: not a regular file`)
    checkOwnership(file, st)
    text = await handle.readFile('utf8')
  } finally {
    await handle.close()
  }
  const {defaultLoaders} = await loadCosmiconfig()
  let data: unknown
  try {
    data = ext === '.json' ? defaultLoaders['.json'](file, text) : await loadYaml(file, text)
  } catch (err) {
    throw parseFailure(err, file)
  }
  return validate(file, data ?? {})
}

/**
 * cosmiconfig's YAML loader, except that a file of only comments sets nothing: js-yaml 5 calls it
 * "expected a document, but the input is empty", and a commented-out example config is what an
 * operator leaves in /etc/mesh.
 */
async function loadYaml(file: string, text: string): Promise<unknown> {
  if (/^(\s*(#.*)?(\r?\n|$))*$/.test(text)) return undefined
  const {defaultLoaders} = await loadCosmiconfig()
  return defaultLoaders['.yaml'](file, text)
}

const YAML_LOADERS = {'.yaml': loadYaml, '.yml': loadYaml, noExt: loadYaml}

/**
 * A root service refuses a config file that anyone but root (or the service's own user) could
 * change: whoever can write it chooses meshd's socket mode and state dir, which is root for
 * them. Refused rather than warned about: a warning goes to a journal nobody reads while the
 * daemon runs on with the planted settings. (sshd's StrictModes makes the same choice.)
 */
export function checkOwnership(
  file: string,
  st: {mode: number; uid: number},
  uid = process.getuid?.(),
): void {
  if ((st.mode & 0o022) !== 0)
    throw new MeshError('CONFIG_FILE_INVALID', {
      message: `${file}: writable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); meshd and the controller refuse it`,
      hint: `make it writable by its owner only: \`chmod go-w ${file}\``,
    })
  if (uid !== undefined && st.uid !== 0 && st.uid !== uid)
    throw new MeshError('CONFIG_FILE_INVALID', {
      message: `${file}: owned by uid ${st.uid}, neither root nor the user running this (uid ${uid}); meshd and the controller refuse it`,
      hint: `give it to root: \`chown root: ${file}\``,
    })
}

function missingOrUnreadable(file: string, err: unknown, mustExist: boolean): undefined {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    if (!mustExist) return undefined
    throw invalid(`${file}: no such file`)
  }
  throw new UnreadableError(file, code === 'EACCES' ? 'permission denied' : String(code ?? err))
}

/** A loader's error as one line: the file and the parser's reason (js-yaml: reason and line). */
function parseFailure(err: unknown, file: string | undefined): MeshError {
  const e = err as Error & {filepath?: string; reason?: string; mark?: {line?: number}}
  const where = e.filepath ?? file ?? 'config file'
  let reason: string
  if (e.reason !== undefined)
    reason = `${e.reason}${e.mark?.line !== undefined ? ` (line ${e.mark.line + 1})` : ''}`
  else {
    // cosmiconfig prefixes "JSON Error in FILE:\n"; keep the parser's own first line.
    const lines = String(e.message ?? err).split('\n')
    reason = (/^(JSON|YAML) Error in /.test(lines[0] ?? '') ? lines[1] : lines[0]) ?? 'unknown error'
  }
  return invalid(`${where}: cannot parse: ${reason.trim()}`)
}

/** Checks a loaded file against the schema; each problem (up to three) names the file and the key. */
export function validate(file: string, data: unknown): ConfigLayer {
  const keyPrefix = path.basename(file) === 'package.json' ? 'mesh.' : ''
  const parsed = ConfigFileSchema.safeParse(data)
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => describeIssue(i, keyPrefix))
    const more = problems.length > 3 ? `; and ${problems.length - 3} more` : ''
    throw invalid(`${file}: ${problems.slice(0, 3).join('; ')}${more}`, {
      file,
      problems: problems.slice(0, 20),
    })
  }
  return {file, keyPrefix, data: parsed.data as ConfigFile}
}

/** One zod issue as `daemon.logLevel: expected one of …` or `unknown key daemon.foo (allowed: …)`. */
function describeIssue(issue: z.core.$ZodIssue, keyPrefix: string): string {
  const at = issue.path.map(String)
  const allowed = (p: string[]): string =>
    (p.length === 0 ? [...SECTIONS] : settingsOf(p[0] as Section).map((s) => s.name)).join(', ')
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => keyPrefix + [...at, k].join('.'))
    return `unknown key${keys.length > 1 ? 's' : ''} ${keys.join(', ')} (allowed: ${allowed(at)})`
  }
  if (issue.code === 'invalid_type' && at.length <= 1) {
    const what = at.length === 0 ? 'sections' : 'settings'
    const name = at.length === 0 ? keyPrefix.replace(/\.$/, '') : keyPrefix + at[0]
    return `${name ? `${name}: ` : ''}expected a mapping of ${what} (${allowed(at)})`
  }
  return `${keyPrefix}${at.join('.')}: ${issue.message}`
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file)
    return true
  } catch {
    return false
  }
}

/**
 * cosmiconfig, loaded on first use. It is CommonJS: under Node its named exports are there, but
 * in the esbuild bundle a dynamic import of it yields them under `default` only.
 */
async function loadCosmiconfig(): Promise<typeof import('cosmiconfig')> {
  const mod = (await import('cosmiconfig')) as typeof import('cosmiconfig') & {
    default?: typeof import('cosmiconfig')
  }
  return typeof mod.cosmiconfig === 'function' ? mod : mod.default!
}
