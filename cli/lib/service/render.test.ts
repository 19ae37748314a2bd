// What install and uninstall print for people, in the order things happen.
import {afterEach, expect, it} from 'vitest'
import {installDaemon, uninstallDaemon} from './install.js'
import {installLines, shellLine, uninstallLines} from './render.js'
import {dryRunSystem} from './system.js'
import {FakeSystem} from './testing/fake-system.js'

const h = new FakeSystem()
afterEach(() => h.cleanup())
const opts = {
  entry: ['/usr/bin/node', '/opt/mesh/bin/mesh.js'],
  wireguard: 'auto',
  logLevel: 'info',
  noStart: false,
} as const

it('a dry run shows the account first, then the unit, then the service manager', async () => {
  const res = await installDaemon(dryRunSystem(h), {...opts, dryRun: true})
  const lines = installLines(res)
  expect(lines[0]).toBe('would run: groupadd --system mesh')
  expect(lines[1]).toBe('would write /etc/systemd/system/meshd.service:')
  expect(lines[3]).toBe(res.unit)
  expect(lines.slice(4)).toEqual([
    'would run: systemctl daemon-reload',
    'would run: systemctl enable meshd.service',
    'would run: systemctl restart meshd.service',
  ])
})

it('an install, a second install and an uninstall report what they did', async () => {
  expect(installLines(await installDaemon(h, {...opts, dryRun: false}))).toContain(
    'wrote /etc/systemd/system/meshd.service',
  )
  expect(installLines(await installDaemon(h, {...opts, dryRun: false}))).toEqual([
    '/etc/systemd/system/meshd.service is up to date',
    'ran: systemctl enable meshd.service',
    'ran: systemctl start meshd.service',
  ])
  const un = uninstallLines(await uninstallDaemon(h, {keepGroup: false, dryRun: false}))
  expect(un[0]).toBe('removed /etc/systemd/system/meshd.service')
  expect(un).toContain('ran: groupdel mesh')
  expect(un).toContainEqual(expect.stringMatching(/^kept \/var\/lib\/mesh /))
})

it('quotes command words as a shell would need them', () => {
  expect(shellLine(['useradd', '--comment', 'mesh controller', "it's"])).toBe(
    `useradd --comment 'mesh controller' 'it'\\''s'`,
  )
})
