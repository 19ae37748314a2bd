// `mesh controller start` as a real process from the built CLI: first start on an empty data
// dir (tenant default, admin password printed once and saved 0600), MESH_ADMIN_PASSWORD, the
// "listening" log line, request ids in the logs, and a clean exit 0 on SIGTERM.
import {spawn, type ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterEach, describe, expect, it} from 'vitest'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BUILT = fs.existsSync(path.join(ROOT, 'dist/cli/commands/controller/start.js'))

interface Proc {
  child: ChildProcess
  url: string
  stdout: string[]
  stderr: string[]
  exited: Promise<number | null>
}

const started: Proc[] = []
const dirs: string[] = []
afterEach(async () => {
  for (const p of started.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
    await p.exited
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, {recursive: true, force: true})
})

async function start(dataDir: string, env: Record<string, string | undefined> = {}): Promise<Proc> {
  const child = spawn(
    process.execPath,
    ['bin/mesh.js', 'controller', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0'],
    {
      cwd: ROOT,
      env: {...process.env, MESH_ADMIN_PASSWORD: undefined, ...env},
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const stdout: string[] = []
  const stderr: string[] = []
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.stderr!.on('data', (d) => stderr.push(String(d)))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "listening" line: ${stdout.join('')} ${stderr.join('')}`)),
      20_000,
    )
    let buf = ''
    child.stdout!.on('data', (d) => {
      buf += String(d)
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        stdout.push(line)
        if (line.includes('"msg":"listening"')) {
          clearTimeout(timer)
          resolve((JSON.parse(line) as {url: string}).url)
        }
      }
    })
    void exited.then(() => reject(new Error(`exited early: ${stderr.join('')}`)))
  })
  const p = {child, url, stdout, stderr, exited}
  started.push(p)
  return p
}

const login = (url: string, password: string) =>
  fetch(`${url}/api/v1/login`, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({username: 'admin', password}),
  })

describe.skipIf(!BUILT)('mesh controller start', () => {
  it('creates the admin on first start, prints the password once, saves it 0600, and exits 0 on SIGTERM', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-main-'))
    dirs.push(base)
    const dataDir = path.join(base, 'data')
    const first = await start(dataDir)
    const file = path.join(dataDir, 'initial-admin-password')
    const password = fs.readFileSync(file, 'utf8').trim()
    expect(password.length).toBeGreaterThanOrEqual(20)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.statSync(dataDir).mode & 0o777).toBe(0o700)
    expect(fs.statSync(path.join(dataDir, 'mesh.db')).mode & 0o777).toBe(0o600)
    expect(first.stderr.join('').split(password).length - 1).toBe(1)
    expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)

    const res = await login(first.url, password)
    expect(res.status).toBe(200)
    const who = (await res.json()) as {user: {superuser: boolean; role: string}; tenant: {name: string}}
    expect(who).toMatchObject({user: {superuser: true, role: 'owner'}, tenant: {name: 'default'}})
    const reqId = res.headers.get('x-request-id')
    expect(first.stdout.some((l) => l.includes(`"reqId":"${reqId}"`))).toBe(true)

    first.child.kill('SIGTERM')
    expect(await first.exited).toBe(0)

    // Second start: nothing printed again, the same password still works.
    const second = await start(dataDir)
    expect(second.stderr.join('')).not.toContain(password)
    expect((await login(second.url, password)).status).toBe(200)
    second.child.kill('SIGTERM')
    expect(await second.exited).toBe(0)
  })

  it('takes the first admin password from MESH_ADMIN_PASSWORD and then writes no password file', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-main-'))
    dirs.push(dataDir)
    const p = await start(dataDir, {MESH_ADMIN_PASSWORD: 'from the environment'})
    expect(fs.existsSync(path.join(dataDir, 'initial-admin-password'))).toBe(false)
    expect(p.stderr.join('')).not.toContain('from the environment')
    expect((await login(p.url, 'from the environment')).status).toBe(200)
    p.child.kill('SIGTERM')
    expect(await p.exited).toBe(0)
  })
})
