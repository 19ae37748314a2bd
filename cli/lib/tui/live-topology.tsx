/**
 * Runs the live `mesh topology` view until the user quits: the picture starts from the REST
 * snapshot (nodes, connections) and follows the controller's admin event stream. When the
 * stream breaks, the last picture stays with the problem above it; on reconnect the
 * connections are read again (events missed meanwhile are not replayed by the controller).
 */
import {render} from 'ink'
import type {AdminEventHandlers} from '../controller-events.js'
import {applyAdminEvent, type Topology} from '../topology/model.js'
import {TopologyView} from './topology-view.js'

export interface TopologySource {
  /** A fresh picture from the controller's REST API. */
  load(): Promise<Topology>
  /** Follows the admin events; see watchAdminEvents. */
  follow(handlers: AdminEventHandlers): {ended: Promise<void>; close(): void}
}

export async function runLiveTopology(
  source: TopologySource,
  networkName: string,
  opts: {stdout?: NodeJS.WriteStream; stdin?: NodeJS.ReadStream} = {},
): Promise<void> {
  const stdout = opts.stdout ?? process.stdout
  const stdin = opts.stdin ?? process.stdin
  let topology: Topology | undefined
  let problem: string | undefined
  let quit: () => void = () => undefined
  const done = new Promise<void>((resolve) => (quit = resolve))
  const view = () => (
    <TopologyView
      topology={topology}
      networkName={networkName}
      problem={problem}
      width={stdout.columns || 80}
      height={stdout.rows || 24}
      interactive={Boolean(stdin.isTTY)}
      onQuit={quit}
    />
  )
  const app = render(view(), {stdout, stdin, exitOnCtrlC: false, patchConsole: false})
  const redraw = () => app.rerender(view())
  stdout.on('resize', redraw)

  let stopped = false
  let stream: {ended: Promise<void>; close(): void} | undefined
  let retry: NodeJS.Timeout | undefined
  let failures = 0
  const connect = async () => {
    if (stopped) return
    try {
      // Events first, then the REST picture: an event between the two is applied to it after.
      const early: Parameters<AdminEventHandlers['onEvent']>[0][] = []
      let loaded = false
      const s = source.follow({
        onSnapshot: () => undefined,
        onEvent: (ev) => {
          if (!loaded) return void early.push(ev)
          if (topology) topology = applyAdminEvent(topology, ev)
          redraw()
        },
      })
      stream = s
      const fresh = await source.load()
      topology = early.reduce(applyAdminEvent, fresh)
      loaded = true
      failures = 0
      problem = undefined
      redraw()
      await s.ended
      if (!stopped) problem = 'the controller closed its event stream; reconnecting…'
    } catch (err) {
      problem = `${(err as Error).message}; retrying…`
    }
    if (stopped) return
    redraw()
    retry = setTimeout(() => void connect(), Math.min(10_000, 500 * 2 ** failures++))
  }
  void connect()
  const onSigint = () => quit()
  process.once('SIGINT', onSigint)
  try {
    await done
  } finally {
    stopped = true
    process.off('SIGINT', onSigint)
    if (retry) clearTimeout(retry)
    stdout.off('resize', redraw)
    stream?.close()
    app.unmount()
  }
}
