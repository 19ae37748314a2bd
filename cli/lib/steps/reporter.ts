/**
 * Shows steps as they change: on a terminal (stderr a TTY) a live block with a spinner (Ink,
 * loaded only then); otherwise one plain line per step each time its state changes, so logs of
 * scripts and CI read as a sequence. Nothing at all with --json (stdout stays one JSON value).
 */
import {terminalText} from '../../../shared/text.js'
import type {Step} from './join-steps.js'

export interface StepsReporter {
  update(steps: readonly Step[]): void
  /** Leaves the final state on screen. */
  close(): Promise<void>
}

export function plainReporter(write: (line: string) => void): StepsReporter {
  const seen = new Map<string, string>()
  return {
    update(steps) {
      for (const s of steps) {
        if (s.state === 'pending') continue
        const key = `${s.state}:${s.text}`
        if (seen.get(s.id) === key) continue
        seen.set(s.id, key)
        const suffix = s.state === 'running' ? '…' : ''
        write(`${s.state === 'failed' ? 'failed: ' : ''}${terminalText(s.text)}${suffix}`)
      }
    },
    close: async () => undefined,
  }
}

export async function terminalReporter(stream: NodeJS.WriteStream): Promise<StepsReporter> {
  const [{render}, {createElement}, {StepsView}] = await Promise.all([
    import('ink'),
    import('react'),
    import('./steps-view.js'),
  ])
  let steps: readonly Step[] = []
  const app = render(createElement(StepsView, {steps}), {
    stdout: stream,
    patchConsole: false,
    exitOnCtrlC: true,
    // Chosen by the caller (a terminal): Ink's own CI guess would hold every frame until exit.
    interactive: true,
  })
  return {
    update(next) {
      steps = next
      app.rerender(createElement(StepsView, {steps}))
    },
    async close() {
      app.rerender(createElement(StepsView, {steps}))
      app.unmount()
      await app.waitUntilExit().catch(() => undefined)
    },
  }
}

/** The reporter for this run: none with --json, a live one on a terminal, plain lines otherwise. */
export async function stepsReporter(opts: {
  json: boolean
  stderr?: NodeJS.WriteStream
}): Promise<StepsReporter> {
  const stderr = opts.stderr ?? process.stderr
  if (opts.json) return {update: () => undefined, close: async () => undefined}
  if (stderr.isTTY && process.env.CI !== 'true' && process.env.TERM !== 'dumb')
    return terminalReporter(stderr)
  return plainReporter((line) => stderr.write(`${line}\n`))
}
