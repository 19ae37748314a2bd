// The generated units checked by systemd itself (systemd-analyze verify needs no systemd as PID 1,
// only that ExecStart's program exists: the built bin/mesh.js on this Node), and the built CLI's
// install commands on this host, which change nothing here (--print, --dry-run).
import {execFile} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'
import {afterAll, describe, expect, it} from 'vitest'
import {BIN, mesh} from '../../../test/cli-runner.js'
import {meshEntry} from './entry.js'
import {privilegedPorts} from './spec.js'
import {controllerUnit, daemonUnit} from './systemd.js'

const run = promisify(execFile)
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => fs.existsSync(p))
const ENTRY = meshEntry({execPath: process.execPath, script: BIN, sea: false})
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-units-'))
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}))

/** systemd-analyze verify on the unit under its real name; its complaints, '' when none. */
async function verify(name: string, text: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(tmp, 'u-'))
  fs.writeFileSync(path.join(dir, name), text)
  const res = await run(ANALYZE!, ['verify', path.join(dir, name)], {timeout: 30_000}).catch(
    (err: {stdout: string; stderr: string; code: number}) => ({...err, failed: err.code}),
  )
  return `${res.stdout}${res.stderr}`.trim()
}

const controller = (
  flags: {listen: string; stunListen?: string; publicUrl?: string},
  createdUser = false,
): string =>
  controllerUnit({
    entry: ENTRY,
    logLevel: 'info',
    ...flags,
    privilegedPorts: privilegedPorts(flags),
    createdUser,
  })

describe.runIf(ANALYZE)('systemd-analyze verify accepts', () => {
  it.each([
    ['meshd.service', daemonUnit({entry: ENTRY, wireguard: 'auto', logLevel: 'info', createdGroup: false})],
    [
      'meshd.service',
      daemonUnit({entry: ENTRY, wireguard: 'userspace', logLevel: 'debug', createdGroup: true}),
    ],
    [
      'meshd.service',
      daemonUnit({entry: ['/usr/bin/env'], wireguard: 'kernel', logLevel: 'info', createdGroup: true}),
    ],
    ['mesh-controller.service', controller({listen: '127.0.0.1:8080'}, true)],
    [
      'mesh-controller.service',
      controller({
        listen: '0.0.0.0:443',
        stunListen: '0.0.0.0:478',
        publicUrl: 'https://ctl.example/a b?x=1&y=50%',
      }),
    ],
  ])('%s #%#', async (name, text) => {
    expect(await verify(name, text)).toBe('')
  })

  it('and rejects a unit whose program does not exist (so the checks above mean something)', async () => {
    const text = daemonUnit({
      entry: ['/nonexistent/mesh'],
      wireguard: 'auto',
      logLevel: 'info',
      createdGroup: false,
    })
    expect(await verify('meshd.service', text)).toContain('/nonexistent/mesh')
  })
})

describe('the built CLI on this host', () => {
  const configDir = fs.mkdtempSync(path.join(tmp, 'cfg-'))
  const systemd = fs.existsSync('/run/systemd/system')

  it('`daemon install --print` prints the unit for this mesh and changes nothing', async () => {
    const r = await mesh(['daemon', 'install', '--print'], {configDir})
    expect(r.code).toBe(0)
    // the child runs the same Node as this test, and bin/mesh.js; no --wireguard or --log-level
    // unless given (/etc/mesh/config.yaml decides then)
    expect(r.stdout).toBe(daemonUnit({entry: ENTRY, createdGroup: r.stdout.includes('X-Mesh-Created-Group')}))
    expect(r.stdout).not.toMatch(/--wireguard|--log-level/)
    const given = await mesh(
      ['daemon', 'install', '--print', '--wireguard', 'userspace', '--log-level', 'debug'],
      {
        configDir,
      },
    )
    expect(given.stdout).toMatch(
      /daemon run --socket \/run\/mesh\/meshd\.sock --state-dir \/var\/lib\/mesh --wireguard userspace --log-level debug/,
    )
  })

  it('`daemon install --dry-run --json` plans, or says there is no systemd, and changes nothing', async () => {
    const r = await mesh(['daemon', 'install', '--dry-run', '--json'], {configDir})
    const out = JSON.parse(r.stdout) as Record<string, unknown>
    if (systemd) {
      expect(r.code).toBe(0)
      expect(out).toMatchObject({
        dryRun: true,
        service: 'meshd',
        unitPath: '/etc/systemd/system/meshd.service',
      })
    } else {
      expect(r.code).toBe(69)
      expect(out).toMatchObject({
        error: {
          code: 'SERVICE_MANAGER_UNAVAILABLE',
          detail: {
            unitPath: '/etc/systemd/system/meshd.service',
            unit: expect.stringContaining('KillMode=process'),
          },
        },
      })
    }
  })

  it.runIf(!systemd)(
    '`controller install` without systemd prints the unit on stdout and the reason on stderr',
    async () => {
      const r = await mesh(['controller', 'install', '--listen', '0.0.0.0:8080'], {configDir})
      expect(r.code).toBe(69)
      expect(r.stdout).toContain('User=mesh-controller')
      expect(r.stderr).toContain('systemd is not running as PID 1')
      expect(r.stderr).toContain('SERVICE_MANAGER_UNAVAILABLE')
    },
  )

  it('`controller install` refuses a malformed --listen with a usage error', async () => {
    const r = await mesh(['controller', 'install', '--listen', '8080', '--dry-run'], {configDir})
    expect(r.code).toBe(64)
    expect(r.stderr).toContain('--listen: expected HOST:PORT')
  })

  it('`daemon uninstall` with nothing installed succeeds and says so', async () => {
    const r = await mesh(['daemon', 'uninstall', '--dry-run'], {configDir})
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('does not exist: nothing to uninstall')
  })
})
