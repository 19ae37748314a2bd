// `mesh login --oidc` end to end: the BUILT CLI (stdin a pipe, its own config dir) against an
// in-process controller that is the OpenID client of a real oidc-provider on 127.0.0.1. The
// scripted browser plays the person: it follows the URL the CLI prints and comes back to the
// CLI's loopback callback (code flow), or enters the code the CLI prints (device flow).
import {spawn, type ChildProcessWithoutNullStreams} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {BIN, ROOT, mesh} from './cli-runner.js'
import {TEST_CLIENT_ID, browse, startTestIdp, type TestIdp} from './support/oidc-provider.js'

let idp: TestIdp
let ctl: TestController
let dir: string

/** Runs the CLI, letting the test read its output while it runs; killed after 60 s. */
function start(args: string[], configDir: string) {
  const env: Record<string, string | undefined> = {...process.env, MESH_CONFIG_DIR: configDir, NO_COLOR: '1'}
  delete env.MESH_CONTROLLER
  delete env.MESH_TOKEN
  delete env.CI
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, [BIN, ...args], {cwd: ROOT, env})
  child.stdin.end()
  let stdout = ''
  let stderr = ''
  let wake: () => void = () => undefined
  child.stdout.on('data', (c: Buffer) => ((stdout += c.toString()), wake()))
  child.stderr.on('data', (c: Buffer) => ((stderr += c.toString()), wake()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer)
      wake()
      resolve(code)
    }),
  )
  return {
    exited,
    get stdout() {
      return stdout
    },
    get stderr() {
      return stderr
    },
    /** Waits (on output events, at most 30 s) until `re` matches stdout + stderr. */
    async until(re: RegExp): Promise<RegExpExecArray> {
      const deadline = Date.now() + 30_000
      for (;;) {
        const m = re.exec(stdout + stderr)
        if (m) return m
        if (child.exitCode !== null || Date.now() > deadline)
          throw new Error(`no ${re} in output; stdout: ${stdout}; stderr: ${stderr}`)
        await new Promise<void>((resolve) => {
          wake = resolve
          setTimeout(resolve, 1000).unref()
        })
      }
    },
  }
}

beforeAll(async () => {
  idp = await startTestIdp()
  idp.deviceInterval = 1
  idp.groups.set('cleo', ['ops'])
  ctl = await startTestController({
    oidc: {
      issuers: [
        {
          name: 'corp',
          issuer: idp.issuer,
          clientId: TEST_CLIENT_ID,
          scopes: ['openid', 'profile', 'email', 'groups'],
          allowHttp: true,
        },
      ],
    },
  })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-cli-oidc-'))
}, 60_000)

afterAll(async () => {
  await ctl?.close()
  await idp?.close()
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

describe('mesh login --oidc', () => {
  it('logs in through the browser and a loopback callback, then whoami and logout work', async () => {
    const configDir = path.join(dir, 'code')
    const run = start(['login', '--controller', ctl.url, '--oidc', '--json'], configDir)
    const m = await run.until(/"authorizationUrl":"([^"]+)"/)
    const url = JSON.parse(`"${m[1]!}"`) as string
    const seen = await browse(url, {login: 'cleo'})
    expect(seen.callbackUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback\?/)
    // The browser comes back to the CLI's callback.
    const page = await fetch(seen.callbackUrl!)
    expect(page.status).toBe(200)
    expect(await run.exited, run.stderr).toBe(0)
    const lines = run.stdout.trim().split('\n')
    const result = JSON.parse(lines.slice(1).join('\n')) as {user: {username: string}; controller: string}
    expect(result).toMatchObject({controller: ctl.url, user: {username: 'cleo'}})

    const who = await mesh(['whoami', '--json'], {configDir})
    expect(who.code, who.stderr).toBe(0)
    expect(JSON.parse(who.stdout)).toMatchObject({
      user: {username: 'cleo'},
      identities: [{provider: 'corp', issuer: idp.issuer, groups: ['ops']}],
    })
    const text = await mesh(['whoami'], {configDir})
    expect(text.stdout).toMatch(/^oidc corp:\s+groups: ops$/m)
    const out = await mesh(['logout', '--json'], {configDir})
    expect(JSON.parse(out.stdout)).toMatchObject({revoked: true, removed: true})
  })

  it('logs in a headless machine with the device flow: URL and code as JSON, then polling', async () => {
    const configDir = path.join(dir, 'device')
    const run = start(['login', '--controller', ctl.url, '--oidc', '--device', '--json'], configDir)
    const m = await run.until(/^(\{"verificationUri".*\})$/m)
    const prompt = JSON.parse(m[1]!) as {verificationUri: string; userCode: string; expiresAt: string}
    await run.until(new RegExp(`enter the code ${prompt.userCode}`))
    const seen = await browse(prompt.verificationUri, {login: 'cleo', userCode: prompt.userCode})
    expect(seen.html ?? '').toMatch(/success/i)
    expect(await run.exited, run.stderr).toBe(0)
    const result = JSON.parse(run.stdout.slice(run.stdout.indexOf('\n') + 1)) as {user: {username: string}}
    expect(result.user.username).toBe('cleo')
    const who = await mesh(['whoami', '--json'], {configDir})
    expect(JSON.parse(who.stdout)).toMatchObject({user: {username: 'cleo'}})
  })

  it('names the issuers when asked for one the controller does not have', async () => {
    const r = await mesh(
      ['login', '--controller', ctl.url, '--oidc', '--issuer', 'nope', '--device', '--json'],
      {
        configDir: path.join(dir, 'none'),
      },
    )
    expect(r.code).toBe(66)
    expect(JSON.parse(r.stdout)).toMatchObject({error: {code: 'OIDC_NOT_CONFIGURED'}})
    expect(JSON.parse(r.stdout).error.message).toContain('corp')
  })
})

describe('mesh signup --oidc', () => {
  it('makes the account a user invite admits from the OIDC identity (device flow), and spends the invite', async () => {
    const inv = await fetch(`${ctl.url}/api/v1/user-invites`, {
      method: 'POST',
      headers: {authorization: `Bearer ${ctl.adminToken}`, 'content-type': 'application/json'},
      body: JSON.stringify({role: 'moderator', maxUses: 1}),
    })
    expect(inv.status).toBe(201)
    const {inviteString} = (await inv.json()) as {inviteString: string}
    const configDir = path.join(dir, 'signup')
    const run = start(['signup', inviteString, '--oidc', '--device', '--json'], configDir)
    const m = await run.until(/^(\{"verificationUri".*\})$/m)
    const prompt = JSON.parse(m[1]!) as {verificationUri: string; userCode: string}
    const seen = await browse(prompt.verificationUri, {login: 'sam', userCode: prompt.userCode})
    expect(seen.html ?? '').toMatch(/success/i)
    expect(await run.exited, run.stderr).toBe(0)
    const result = JSON.parse(run.stdout.slice(run.stdout.indexOf('\n') + 1)) as {
      user: {username: string; role: string}
    }
    expect(result.user).toMatchObject({username: 'sam', role: 'moderator'})
    const who = await mesh(['whoami', '--json'], {configDir})
    expect(JSON.parse(who.stdout)).toMatchObject({
      user: {username: 'sam'},
      identities: [{provider: 'corp', issuer: idp.issuer}],
    })

    // Used up: refused before the provider is asked, and no second account.
    const again = await mesh(['signup', inviteString, '--oidc', '--device', '--json'], {
      configDir: path.join(dir, 'signup-2'),
    })
    expect(again.code).not.toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({error: {code: 'INVITE_USED_UP'}})
  })
})
