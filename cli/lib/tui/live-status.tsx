/**
 * Runs the live `mesh status` dashboard until the user quits: follows meshd's status stream
 * (GET /v1/watch), applies each event, and re-renders StatusDashboard. When the stream breaks
 * (meshd restarted, say) the last status stays on screen with the problem above it, and the
 * stream is opened again after a short, growing pause (0.5 s up to 5 s).
 */
import {applyWatchEvent, type Status} from '../../../shared/protocol/local-api.js'
import type {DaemonClient} from '../daemon-client.js'
import {startLive} from './live.js'
import {StatusDashboard} from './status-dashboard.js'

export interface LiveStatusOptions {
  stdout?: NodeJS.WriteStream
  stdin?: NodeJS.ReadStream
}

export async function runLiveStatus(client: DaemonClient, opts: LiveStatusOptions = {}): Promise<void> {
  const stdout = opts.stdout ?? process.stdout
  const stdin = opts.stdin ?? process.stdin
  let status: Status | undefined
  let problem: string | undefined
  const screen = startLive(
    (quit) => (
      <StatusDashboard
        status={status}
        problem={problem}
        width={stdout.columns || 80}
        height={stdout.rows || 24}
        interactive={Boolean(stdin.isTTY)}
        onQuit={quit}
      />
    ),
    {stdout, stdin},
  )
  // Handshake ages move with the clock even when nothing else changes.
  const ticker = setInterval(screen.redraw, 1000)

  let stream: ReturnType<DaemonClient['watch']> | undefined
  let stopped = false
  let retry: NodeJS.Timeout | undefined
  let failures = 0
  const open = () => {
    if (stopped) return
    const s = client.watch((ev) => {
      failures = 0
      problem = undefined
      status = applyWatchEvent(status, ev)
      screen.redraw()
    })
    stream = s
    s.ended
      .then(
        () => (problem = stopped ? undefined : 'meshd closed the status stream; reconnecting…'),
        (err: unknown) => (problem = `${(err as Error).message}; retrying…`),
      )
      .finally(() => {
        if (stopped) return
        screen.redraw()
        retry = setTimeout(open, Math.min(5000, 500 * 2 ** failures++))
      })
  }
  open()
  try {
    await screen.done
  } finally {
    stopped = true
    clearInterval(ticker)
    if (retry) clearTimeout(retry)
    stream?.close()
    screen.stop()
  }
}
