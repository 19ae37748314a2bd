/**
 * Runs the live `mesh status` dashboard until the user quits: follows meshd's status stream
 * (GET /v1/watch), applies each event, and re-renders StatusDashboard. When the stream breaks
 * (meshd restarted, say) the last status stays on screen with the problem above it, and the
 * stream is opened again after a short, growing pause (0.5 s up to 5 s).
 */
import {render} from 'ink'
import {applyWatchEvent, type Status} from '../../../shared/protocol/local-api.js'
import type {DaemonClient} from '../daemon-client.js'
import {StatusDashboard} from './status-dashboard.js'

export interface LiveStatusOptions {
  stdout?: NodeJS.WriteStream
  stdin?: NodeJS.ReadStream
}

export async function runLiveStatus(client: DaemonClient, opts: LiveStatusOptions = {}): Promise<void> {
  const stdout = opts.stdout ?? process.stdout
  const stdin = opts.stdin ?? process.stdin
  const interactive = Boolean(stdin.isTTY)
  let status: Status | undefined
  let problem: string | undefined
  let quit: () => void = () => undefined
  const done = new Promise<void>((resolve) => (quit = resolve))

  const view = () => (
    <StatusDashboard
      status={status}
      problem={problem}
      width={stdout.columns || 80}
      height={stdout.rows || 24}
      interactive={interactive}
      onQuit={quit}
    />
  )
  const app = render(view(), {stdout, stdin, exitOnCtrlC: false, patchConsole: false})
  const redraw = () => app.rerender(view())
  stdout.on('resize', redraw)
  // Handshake ages move with the clock even when nothing else changes.
  const ticker = setInterval(redraw, 1000)

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
      redraw()
    })
    stream = s
    s.ended
      .then(
        () => (problem = stopped ? undefined : 'meshd closed the status stream; reconnecting…'),
        (err: unknown) => (problem = `${(err as Error).message}; retrying…`),
      )
      .finally(() => {
        if (stopped) return
        redraw()
        const delay = Math.min(5000, 500 * 2 ** failures++)
        retry = setTimeout(open, delay)
      })
  }
  open()
  // Ctrl-C without a terminal on stdin (keys not read): quit the same way.
  const onSigint = () => quit()
  process.once('SIGINT', onSigint)
  try {
    await done
  } finally {
    stopped = true
    process.off('SIGINT', onSigint)
    clearInterval(ticker)
    if (retry) clearTimeout(retry)
    stdout.off('resize', redraw)
    stream?.close()
    app.unmount()
  }
}
