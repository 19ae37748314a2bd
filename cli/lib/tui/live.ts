/**
 * The frame of a live screen (`mesh status`, `mesh topology`): renders `view` with Ink on the
 * terminal, re-renders on resize and on redraw(), quits on the view's onQuit or on SIGINT (also
 * when keys are not read), and leaves the terminal as it was once `done` has settled and stop()
 * ran. The caller owns the data and calls redraw() when it changes.
 */
import {render} from 'ink'
import type {ReactElement} from 'react'

export interface LiveScreen {
  redraw(): void
  /** Settles when the user quits. */
  readonly done: Promise<void>
  stop(): void
}

export function startLive(
  view: (quit: () => void) => ReactElement,
  opts: {stdout: NodeJS.WriteStream; stdin: NodeJS.ReadStream},
): LiveScreen {
  const {stdout, stdin} = opts
  let quit: () => void = () => undefined
  const done = new Promise<void>((resolve) => (quit = resolve))
  // Live only on a terminal (the command checked); Ink's own CI guess would hold every frame.
  const app = render(view(quit), {stdout, stdin, exitOnCtrlC: false, patchConsole: false, interactive: true})
  const redraw = () => app.rerender(view(quit))
  stdout.on('resize', redraw)
  const onSigint = () => quit()
  process.once('SIGINT', onSigint)
  return {
    redraw,
    done,
    stop() {
      process.off('SIGINT', onSigint)
      stdout.off('resize', redraw)
      app.unmount()
    },
  }
}
