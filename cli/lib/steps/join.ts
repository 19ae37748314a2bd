/**
 * A join with its steps shown (`mesh join`, `mesh up --auth-key`): register through meshd, then,
 * when asked to wait, follow approval, WireGuard and the first handshake on meshd's status
 * stream for at most `timeoutMs`. meshd does the work either way; waiting only watches it.
 */
import type {JoinRequest, JoinResult} from '../../../shared/protocol/local-api.js'
import type {DaemonClient} from '../daemon-client.js'
import {followSteps, settled, stepsOf, type Step} from './join-steps.js'
import {stepsReporter} from './reporter.js'

export interface JoinWithStepsOptions {
  json: boolean
  /** Follow the steps after registering (until settled or timeoutMs). */
  wait: boolean
  timeoutMs: number
}

export async function joinWithSteps(
  client: DaemonClient,
  req: JoinRequest,
  opts: JoinWithStepsOptions,
): Promise<{joined: JoinResult; steps: Step[]}> {
  const reporter = await stepsReporter({json: opts.json})
  const registering: Step = {id: 'register', state: 'running', text: `registering with ${req.controller}`}
  reporter.update([registering])
  try {
    let joined: JoinResult
    try {
      joined = await client.join(req)
    } catch (err) {
      reporter.update([{...registering, state: 'failed', text: `registering with ${req.controller}`}])
      throw err
    }
    const registered: Step = {
      id: 'register',
      state: 'done',
      text: `registered as ${joined.nodeName} in ${joined.name}, ${joined.address}`,
    }
    let steps = stepsOf(joined)
    reporter.update([registered, ...steps])
    if (opts.wait && !settled(steps))
      steps = await followSteps(client, joined.id, {
        timeoutMs: opts.timeoutMs,
        onSteps: (s) => reporter.update([registered, ...s]),
      })
    return {joined, steps: [registered, ...steps]}
  } finally {
    await reporter.close()
  }
}
