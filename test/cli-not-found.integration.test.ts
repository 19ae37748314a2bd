/**
 * A mistyped command, with the BUILT CLI: a script gets the closest command named and exit 127
 * (no prompt); a person at a terminal (tmux, on a tmux server of this test's own) is asked
 * "Did you mean …?" by @oclif/plugin-not-found and, on yes, gets the suggested command run.
 */
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {waitFor} from '../cli/lib/lab/sh.js'
import {BIN, mesh} from './cli-runner.js'

let tmp: string
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-notfound-'))
})
afterAll(async () => {
  if (tmp) await fs.rm(tmp, {recursive: true, force: true})
})

describe('a mistyped command', () => {
  it('names the closest command and exits 127 when not on a terminal', async () => {
    const r = await mesh(['stauts'], {configDir: tmp})
    expect(r.code).toBe(127)
    expect(r.stderr).toContain('stauts is not a mesh command (COMMAND_NOT_FOUND)')
    expect(r.stderr).toContain('did you mean `mesh status`?')
    const topic = await mesh(['netwrk', 'list'], {configDir: tmp})
    expect(topic.code).toBe(127)
    expect(topic.stderr).toContain('did you mean `mesh network list`?')
  })

  const hasTmux = spawnSync('tmux', ['-V']).status === 0
  it.skipIf(!hasTmux)('asks "Did you mean …?" on a terminal and runs the suggestion on yes', async () => {
    const server = `meshtest-${randomBytes(3).toString('hex')}`
    const tmux = (...args: string[]) =>
      spawnSync('tmux', ['-L', server, ...args], {encoding: 'utf8', timeout: 10_000})
    const screen = () => tmux('capture-pane', '-p', '-t', 'nf').stdout ?? ''
    try {
      const socket = path.join(tmp, 'no-meshd.sock')
      // `; sleep 30` keeps the pane (and its last screen) after mesh exits; the server is killed below.
      const started = tmux(
        'new-session',
        '-d',
        '-s',
        'nf',
        '-x',
        '100',
        '-y',
        '20',
        `env -u CI MESH_SOCKET=${socket} MESH_CONFIG_DIR=${tmp} NO_COLOR=1 ${process.execPath} ${BIN} stauts; echo "exit=$?"; sleep 30`,
      )
      expect(started.status, started.stderr).toBe(0)
      await waitFor('the prompt', () => /Did you mean status\?/.test(screen()), {
        timeoutMs: 15_000,
        intervalMs: 100,
      })
      tmux('send-keys', '-t', 'nf', 'y', 'Enter')
      // `mesh status` ran: with no meshd it says so and exits 69.
      await waitFor('mesh status to run', () => /exit=69/.test(screen()), {
        timeoutMs: 15_000,
        intervalMs: 100,
      })
      expect(screen()).toContain('cannot reach meshd')
    } finally {
      tmux('kill-server')
    }
  })
})
