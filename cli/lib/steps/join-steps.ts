/**
 * The steps `mesh join` and `mesh up --auth-key` show: registering, waiting for approval,
 * configuring WireGuard, first handshake. The first comes from the join call itself; the others
 * are read off meshd's status stream (GET /v1/watch) until they are done or the wait ends.
 */
import type {NetworkStatus, WatchEvent} from '../../../shared/protocol/local-api.js'
import {applyWatchEvent, type Status} from '../../../shared/protocol/local-api.js'
import type {DaemonClient} from '../daemon-client.js'

export type StepId = 'register' | 'approval' | 'wireguard' | 'handshake'
export type StepState = 'pending' | 'running' | 'done' | 'skipped' | 'failed'

export interface Step {
  readonly id: StepId
  readonly state: StepState
  /** What the step is doing, or what came of it. */
  readonly text: string
}

/** The steps after registration, as a network's status shows them. */
export function stepsOf(n: NetworkStatus): Step[] {
  const approved = n.nodeStatus === 'active'
  const configured = approved && n.up && n.interface !== undefined
  const shook = n.peers.find((p) => p.lastHandshake !== null)
  return [
    approved
      ? {id: 'approval', state: 'done', text: 'approved'}
      : n.nodeStatus === 'pending'
        ? {id: 'approval', state: 'running', text: 'waiting for approval by an admin (`mesh node approve`)'}
        : {id: 'approval', state: 'failed', text: `the node is ${n.nodeStatus}`},
    !approved
      ? {id: 'wireguard', state: 'pending', text: 'configuring WireGuard'}
      : configured
        ? {id: 'wireguard', state: 'done', text: `WireGuard ${n.interface} up, ${n.address}`}
        : {id: 'wireguard', state: 'running', text: `configuring WireGuard ${n.interface}`},
    !configured
      ? {id: 'handshake', state: 'pending', text: 'first handshake'}
      : n.peers.length === 0
        ? {id: 'handshake', state: 'skipped', text: 'no peers yet'}
        : shook
          ? {id: 'handshake', state: 'done', text: `first handshake with ${shook.name} (${shook.path})`}
          : {
              id: 'handshake',
              state: 'running',
              text: `waiting for the first handshake with ${n.peers.length} peer${n.peers.length === 1 ? '' : 's'}`,
            },
  ]
}

/** True when no step is still waiting for something. */
export const settled = (steps: readonly Step[]): boolean =>
  steps.every((s) => s.state === 'done' || s.state === 'skipped' || s.state === 'failed')

/**
 * Follows a network's steps on meshd's status stream: `onSteps` gets them each time they
 * change; resolves with the last ones when all are settled or after `timeoutMs`, whichever is
 * first (steps still running then are left to run: meshd keeps going on its own).
 */
export async function followSteps(
  client: Pick<DaemonClient, 'watch'>,
  networkId: string,
  opts: {timeoutMs: number; onSteps: (steps: Step[]) => void},
): Promise<Step[]> {
  let status: Status | undefined
  let last: Step[] = []
  let lastText = ''
  let finish: () => void = () => undefined
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const stream = client.watch((ev: WatchEvent) => {
    status = applyWatchEvent(status, ev)
    const n = status?.networks.find((x) => x.id === networkId)
    if (!n) return
    const steps = stepsOf(n)
    const text = JSON.stringify(steps)
    if (text !== lastText) {
      lastText = text
      last = steps
      opts.onSteps(steps)
    }
    if (settled(steps)) finish()
  })
  const timer = setTimeout(finish, opts.timeoutMs)
  try {
    await Promise.race([finished, stream.ended])
  } finally {
    clearTimeout(timer)
    stream.close()
    await stream.ended.catch(() => undefined)
  }
  return last
}
