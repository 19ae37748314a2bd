// meshd holds only the capabilities meshd.service leaves it, and still works: run with the unit's
// CapabilityBoundingSet (setpriv, as systemd would bound it), on a file system read-only but where
// the unit lets it write (ProtectSystem=strict, emulated with a mount namespace), in a network
// namespace of its own, it joins a network and brings up a wireguard-go interface; and the unit's
// supplementary group is
// what lets it hand its socket to `mesh` without CAP_CHOWN. Needs root, setpriv, ip, wg and
// wireguard-go; skips otherwise. Nothing touches the root namespace but files under a temp dir.
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {waitFor} from '../../../daemon/testing/harness.js'
import {daemonUnit} from './systemd.js'

const has = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0
const root = path.resolve(import.meta.dirname, '../../..')
const meshJs = path.join(root, 'bin', 'mesh.js')
const canRun =
  process.getuid?.() === 0 &&
  has('setpriv', ['--version']) &&
  has('ip', ['-V']) &&
  has('wg', ['--version']) &&
  has('wireguard-go', ['--version']) &&
  fs.existsSync(path.join(root, 'dist', 'daemon', 'main.js'))

/** The unit's CapabilityBoundingSet= as setpriv's --bounding-set argument. */
function unitBoundingSet(): string {
  const unit = daemonUnit({
    entry: ['/usr/bin/node'],
    wireguard: 'auto',
    logLevel: 'info',
    createdGroup: false,
  })
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)![1]!.split(/\s+/).filter(Boolean)
  return ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',')
}

/**
 * ProtectSystem=strict, emulated in a private mount namespace: every mount read-only but /dev,
 * /proc, /sys and what the unit leaves writable: /run/wireguard (RuntimeDirectory=wireguard) and
 * /tmp (PrivateTmp=yes gives a writable one; the test's state dir and socket, standing in for
 * StateDirectory= and RuntimeDirectory=mesh, live under it). Then exec "$@".
 */
const READ_ONLY_SYSTEM = `
set -e
mkdir -p /run/wireguard
mount --bind /tmp /tmp
mount --bind /run/wireguard /run/wireguard
for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$m" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*|/tmp|/tmp/*|/run/wireguard) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
for probe in /etc/.mesh-rw-probe /var/lib/.mesh-rw-probe /run/.mesh-rw-probe; do
  if touch "$probe" 2>/dev/null; then rm -f "$probe"; echo "$probe is writable" >&2; exit 99; fi
done
exec "$@"
`

/** CAP_NET_ADMIN's number (linux/capability.h): bit 12 of CapBnd in /proc/PID/status. */
const NET_ADMIN = 12

describe.skipIf(!canRun)('meshd bounded to the capabilities of meshd.service', () => {
  const ns = `cap${randomBytes(3).toString('hex')}`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-caps-'))
  const procs: ChildProcess[] = []
  const password = `pw-${randomBytes(9).toString('base64url')}`
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MESH_CONFIG_DIR: path.join(dir, 'cfg'),
    NO_COLOR: '1',
    MESH_ADMIN_PASSWORD: password,
  }
  delete env.MESH_CONTROLLER
  delete env.MESH_TOKEN
  delete env.MESH_SOCKET
  const url = 'http://127.0.0.1:8080' // the namespace's own loopback
  const sock = path.join(dir, 'run', 'meshd.sock')

  function start(name: string, argv: string[]): ChildProcess {
    const out = fs.openSync(path.join(dir, `${name}.log`), 'a')
    const p = spawn('ip', ['netns', 'exec', ns, ...argv], {stdio: ['ignore', out, out], env})
    procs.push(p)
    return p
  }
  function mesh(args: string[], input?: string): string {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, meshJs, ...args], {
      encoding: 'utf8',
      env,
      timeout: 30_000,
      ...(input !== undefined && {input}),
    })
    if (r.status !== 0) throw new Error(`mesh ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }

  beforeAll(async () => {
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0)
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    start('controller', [
      process.execPath,
      meshJs,
      'controller',
      'start',
      '--listen',
      '127.0.0.1:8080',
      '--data-dir',
      path.join(dir, 'ctl'),
      '--stun-listen',
      'off',
      '--discovery-listen',
      'off',
      '--log-level',
      'warn',
    ])
    await waitFor(
      'the controller',
      () => {
        mesh(['login', '-c', url, '-u', 'admin', '--password-stdin'], password)
        return true
      },
      20_000,
      200,
    )
  })

  afterAll(() => {
    for (const p of procs) p.kill('SIGTERM')
    // wireguard-go outlives meshd by design: end what still runs in our namespace, then the namespace.
    const pids = spawnSync('ip', ['netns', 'pids', ns], {encoding: 'utf8'})
      .stdout.split(/\s+/)
      .filter(Boolean)
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {
        // gone
      }
    }
    spawnSync('ip', ['netns', 'del', ns])
    // A killed wireguard-go leaves its UAPI socket behind.
    for (const f of fs.existsSync('/run/wireguard') ? fs.readdirSync('/run/wireguard') : [])
      if (f.startsWith(ns)) fs.rmSync(path.join('/run/wireguard', f), {force: true})
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('joins a network and configures a wireguard-go interface with CAP_NET_ADMIN alone, writing only where the unit lets it', async () => {
    mesh(['network', 'create', 'capnet', '--cidr', '10.77.0.0/24'])
    const key = (
      JSON.parse(mesh(['authkey', 'create', '--network', 'capnet', '--pre-approved', '--json'])) as {
        key: string
      }
    ).key
    const daemon = start('meshd', [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      READ_ONLY_SYSTEM,
      'sh',
      'setpriv',
      '--bounding-set',
      unitBoundingSet(),
      '--inh-caps',
      '-all',
      '--',
      process.execPath,
      meshJs,
      'daemon',
      'run',
      '--socket',
      sock,
      '--state-dir',
      path.join(dir, 'state'),
      '--wireguard',
      'auto',
      '--interface-prefix',
      ns,
    ])
    await waitFor('the socket', () => fs.existsSync(sock), 20_000, 100)
    const status = fs.readFileSync(`/proc/${daemon.pid}/status`, 'utf8')
    // ip netns exec, unshare, sh, setpriv and node exec one another: the same pid, now bounded.
    expect(BigInt(`0x${/^CapBnd:\s*(\w+)$/m.exec(status)![1]}`)).toBe(1n << BigInt(NET_ADMIN))

    mesh(['up', '--auth-key', key, '--controller', url, '--socket', sock, '--name', 'capnode'])
    const iface = await waitFor(
      'the interface',
      () =>
        spawnSync('ip', ['-n', ns, '-br', 'addr'], {encoding: 'utf8'})
          .stdout.split('\n')
          .find((l) => l.startsWith(ns)),
      20_000,
      100,
    )
    expect(iface).toContain('10.77.0.1/24')
    expect(
      spawnSync('ip', ['netns', 'exec', ns, 'wg', 'show', `${ns}0`, 'listen-port'], {encoding: 'utf8'})
        .stdout,
    ).toMatch(/^\d+\n$/)
  })

  it('may chgrp its socket to a group it is a member of without CAP_CHOWN, and to no other', () => {
    // nogroup stands in for `mesh` (this test creates no groups on the host).
    const member = 65534
    const other = 65533
    const r = spawnSync(
      'setpriv',
      [
        '--bounding-set',
        unitBoundingSet(),
        '--inh-caps',
        '-all',
        '--groups',
        String(member),
        '--',
        process.execPath,
        '-e',
        `
        const fs = require('node:fs'), net = require('node:net')
        const p = ${JSON.stringify(path.join(dir, 'chgrp.sock'))}
        const s = net.createServer().listen(p, () => {
          const out = {}
          for (const gid of [${member}, ${other}]) {
            try { fs.chownSync(p, 0, gid); out[gid] = 'ok' } catch (e) { out[gid] = e.code }
          }
          console.log(JSON.stringify(out)); s.close()
        })`,
      ],
      {encoding: 'utf8', timeout: 20_000},
    )
    expect(JSON.parse(r.stdout)).toEqual({[member]: 'ok', [other]: 'EPERM'})
  })
})
