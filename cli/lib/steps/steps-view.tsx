/**
 * The steps of `mesh join` / `mesh up --auth-key` on a terminal: one line per step, a spinner on
 * the one running, ✓ done, – skipped, ✗ failed. A renderer of the steps it is given.
 */
import {Box, Text} from 'ink'
import {useEffect, useState} from 'react'
import {terminalText} from '../../../shared/text.js'
import type {Step} from './join-steps.js'

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']

export function mark(s: Step, frame: number): string {
  switch (s.state) {
    case 'done':
      return '✓'
    case 'skipped':
      return '–'
    case 'failed':
      return '✗'
    case 'running':
      return FRAMES[frame % FRAMES.length]!
    default:
      return '·'
  }
}

export function StepsView({steps}: {steps: readonly Step[]}) {
  const [frame, setFrame] = useState(0)
  const spinning = steps.some((s) => s.state === 'running')
  useEffect(() => {
    if (!spinning) return
    const t = setInterval(() => setFrame((f) => f + 1), 80)
    return () => clearInterval(t)
  }, [spinning])
  return (
    <Box flexDirection="column">
      {steps.map((s) => (
        <Text
          key={s.id}
          color={s.state === 'done' ? 'green' : s.state === 'failed' ? 'red' : undefined}
          dimColor={s.state === 'pending' || s.state === 'skipped'}
        >
          {mark(s, frame)} {terminalText(s.text)}
        </Text>
      ))}
    </Box>
  )
}
