/**
 * The real `mesh status` dashboard in a real terminal (tmux, on a tmux server of this test's
 * own), following a lab node's meshd: a peer that joins appears in it, its state changes as the
 * tunnel comes up, the keys select a peer and open its details, and q quits.
 */
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {afterAll, describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {useLab} from '../lab/e2e-helpers.js'
import {labSkipReason} from '../lab/skip.js'

const skip = labSkipReason({tools: ['tmux']})
const NET = 'tui'
/** A tmux server of this run only (-L): nothing else's sessions are seen or touched. */
const SERVER = `meshtest-${randomBytes(3).toString('hex')}`
const SESSION = 'status'

const tmux = (...args: string[]) =>
  spawnSync('tmux', ['-L', SERVER, ...args], {encoding: 'utf8', timeout: 10_000})
const screen = (): string => tmux('capture-pane', '-p', '-t', SESSION).stdout ?? ''
const sessionAlive = (): boolean => tmux('has-session', '-t', SESSION).status === 0

describe.skipIf(skip !== undefined)(
  `mesh status dashboard in tmux${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let lab: Lab
    let node: LabNode

    useLab({nodes: 1, network: NET, cidr: '10.247.0.0/24'}, (l) => {
      lab = l
      node = l.nodes[0]!
    })

    afterAll(() => {
      tmux('kill-server')
    })

    /** Waits until the dashboard's screen matches; the screen is in the error when it does not. */
    const untilScreen = (what: string, re: RegExp, timeoutMs = 20_000) =>
      waitFor(
        `the dashboard to show ${what}`,
        () => {
          const s = screen()
          if (re.test(s)) return s
          if (!sessionAlive()) throw new Error(`the dashboard exited; last screen:\n${s}`)
          return undefined
        },
        {timeoutMs, intervalMs: 100},
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- screen ---\n${screen()}`)
      })

    it('shows a peer that joins, follows its state, selects it with the keys, and quits on q', async () => {
      const env = lab.env(node)
      const started = tmux(
        'new-session',
        '-d',
        '-s',
        SESSION,
        '-x',
        '120',
        '-y',
        '30',
        '--',
        'env',
        `PATH=${env.PATH}`,
        `MESH_SOCKET=${env.MESH_SOCKET}`,
        `MESH_CONFIG_DIR=${env.MESH_CONFIG_DIR}`,
        'TERM=xterm-256color',
        'mesh',
        'status',
      )
      expect(started.status, started.stderr).toBe(0)
      await untilScreen('the network with no peers', /0\/0 peers online[\s\S]*tui\s+10\.247\.0\.\d+/)

      const peer = await lab.addNode()
      await lab.join(peer, NET)
      const row = new RegExp(`${peer.name}\\s+10\\.247\\.0\\.\\d+`)
      await untilScreen(`${peer.name} appear`, row)
      // The tunnel comes up: the row turns online with a direct path and a handshake.
      const online = new RegExp(
        `● ${peer.name}\\s+10\\.247\\.0\\.\\d+\\s+direct \\S+\\s+\\S+ ms\\s+\\d+s ago`,
      )
      await untilScreen(`${peer.name} online and direct`, online)
      expect(screen()).toContain('1/1 peers online')

      tmux('send-keys', '-t', SESSION, 'Enter')
      await untilScreen('the peer details', /public key\s+\S{20,}/)
      expect(screen()).toMatch(new RegExp(`peer\\s+${peer.name}`))

      tmux('send-keys', '-t', SESSION, 'q')
      await waitFor('the dashboard to exit on q', () => !sessionAlive(), {timeoutMs: 10_000, intervalMs: 100})
    })
  },
)
