/**
 * Runs the lab's external commands (ip, wg, ping, iperf3) with a time limit, optionally inside a
 * network namespace. Every call is bounded: a hung tool must not hang the lab or a test.
 */
import {execFile, spawnSync} from 'node:child_process'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

export interface RunOptions {
  /** Run inside this network namespace (`ip netns exec NS ...`). */
  ns?: string
  env?: NodeJS.ProcessEnv
  /** Milliseconds before the command is killed; default 30 s. */
  timeoutMs?: number
  input?: string
  /** Run as this user (via `setpriv`), e.g. `nobody`. */
  user?: {uid: number; gid: number}
}

const argvFor = (cmd: string, args: readonly string[], opts: RunOptions): [string, string[]] => {
  let argv = [cmd, ...args]
  if (opts.user) {
    argv = [
      'setpriv',
      `--reuid=${opts.user.uid}`,
      `--regid=${opts.user.gid}`,
      '--clear-groups',
      '--',
      ...argv,
    ]
  }
  if (opts.ns) argv = ['ip', 'netns', 'exec', opts.ns, ...argv]
  return [argv[0]!, argv.slice(1)]
}

/** Runs a command and resolves with its exit code and output; never rejects on a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = argvFor(cmd, args, opts)
  return new Promise((resolve) => {
    const child = execFile(
      file,
      argv,
      {
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 30_000,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & {code?: unknown; killed?: boolean}) | null
        let code = 0
        if (e) code = typeof e.code === 'number' ? e.code : e.killed ? 124 : 127
        if (e && e.killed) stderr += `\n(killed after ${opts.timeoutMs ?? 30_000} ms)`
        else if (e && typeof e.code === 'string') stderr += `\n${e.message}`
        resolve({code, stdout, stderr})
      },
    )
    if (opts.input !== undefined) child.stdin?.end(opts.input)
    else child.stdin?.end()
  })
}

/** Like run(), but throws with the command's stderr when it exits non-zero. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) {
    const where = opts.ns ? ` (in ${opts.ns})` : ''
    throw new Error(
      `${cmd} ${args.join(' ')}${where} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`,
    )
  }
  return r.stdout
}

/** Synchronous form for exit handlers, where no promise will ever settle. */
export function runSync(cmd: string, args: readonly string[], opts: RunOptions = {}): RunResult {
  const [file, argv] = argvFor(cmd, args, opts)
  const r = spawnSync(file, argv, {
    env: opts.env ?? process.env,
    timeout: opts.timeoutMs ?? 10_000,
    killSignal: 'SIGKILL',
    encoding: 'utf8',
    input: opts.input,
  })
  return {code: r.status ?? 124, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '')}
}

/** True when `cmd` is found on PATH. */
export function have(cmd: string): boolean {
  return runSync('sh', ['-c', `command -v ${cmd}`], {timeoutMs: 5000}).code === 0
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Polls `probe` until it returns a value other than undefined/false, or throws after `timeoutMs`
 * with `what` and the last probe error in the message. Every lab wait goes through here.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: {timeoutMs: number; intervalMs?: number},
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs
  let last: unknown
  for (let attempt = 0; ; attempt++) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      last = err
    }
    if (Date.now() >= deadline) {
      const why = last instanceof Error ? `: ${last.message}` : ''
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${why}`)
    }
    await sleep(Math.min(opts.intervalMs ?? 100, Math.max(0, deadline - Date.now())))
  }
}
