/**
 * Runs the live `mesh topology` view until the user quits: the picture starts from the REST
 * snapshot (nodes, connections) and follows the controller's admin event stream. When the
 * stream breaks, the last picture stays with the problem above it; on reconnect the
 * connections are read again (events missed meanwhile are not replayed by the controller).
 */
import type {AdminEventHandlers} from '../controller-events.js'
import {applyAdminEvent, type Topology} from '../topology/model.js'
import {startLive} from './live.js'
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
  const screen = startLive(
    (quit) => (
      <TopologyView
        topology={topology}
        networkName={networkName}
        problem={problem}
        width={stdout.columns || 80}
        height={stdout.rows || 24}
        interactive={Boolean(stdin.isTTY)}
        onQuit={quit}
      />
    ),
    {stdout, stdin},
  )

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
          screen.redraw()
        },
      })
      stream = s
      const fresh = await source.load()
      topology = early.reduce(applyAdminEvent, fresh)
      loaded = true
      failures = 0
      problem = undefined
      screen.redraw()
      await s.ended
      if (!stopped) problem = 'the controller closed its event stream; reconnecting…'
    } catch (err) {
      problem = `${(err as Error).message}; retrying…`
    }
    if (stopped) return
    screen.redraw()
    retry = setTimeout(() => void connect(), Math.min(10_000, 500 * 2 ** failures++))
  }
  void connect()
  try {
    await screen.done
  } finally {
    stopped = true
    if (retry) clearTimeout(retry)
    stream?.close()
    screen.stop()
  }
}
