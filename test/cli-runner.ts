/**
 * Runs the BUILT `mesh` CLI (node bin/mesh.js) the way a script would: stdin a pipe (never a
 * TTY), its own config dir, no MESH_CONTROLLER/MESH_TOKEN/CI leaking in from the test's
 * environment, bounded in time. Shared by the CLI integration tests; needs `bash scripts/build.sh`.
 */
import {spawn} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {expect} from 'vitest'
import type {z} from 'zod'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const BIN = path.join(ROOT, 'bin/mesh.js')

export interface Run {
  code: number | null
  stdout: string
  stderr: string
}

export function mesh(
  args: string[],
  opts: {configDir: string; input?: string; env?: Record<string, string | undefined>},
): Promise<Run> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    MESH_CONFIG_DIR: opts.configDir,
    NO_COLOR: '1',
  }
  delete env.MESH_CONTROLLER
  delete env.MESH_TOKEN
  delete env.CI
  Object.assign(env, opts.env)
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
    child.stdin.end(opts.input ?? '')
  })
}

/** Parses --json stdout with a shared schema; a failure names the command's output. */
export function json<S extends z.ZodType>(schema: S, run: Run): z.infer<S> {
  expect(run.code, `exit code; stderr: ${run.stderr}; stdout: ${run.stdout}`).toBe(0)
  return schema.parse(JSON.parse(run.stdout))
}

/** The wire error a failed --json command printed. */
export const wireCode = (run: Run): string | undefined =>
  (JSON.parse(run.stdout) as {error?: {code?: string}}).error?.code
