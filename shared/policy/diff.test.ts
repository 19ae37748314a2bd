import {describe, expect, it} from 'vitest'
import {DIFF_LIMITS, policyDiff} from './index.js'

const lines = (n: number, f: (i: number) => string = (i) => `line ${i}`): string =>
  Array.from({length: n}, (_, i) => f(i)).join('\n') + '\n'

describe('policyDiff', () => {
  it('is empty when the lines are the same (line endings aside)', () => {
    expect(policyDiff('a\nb\n', 'a\r\nb')).toBe('')
  })

  it('shows a first policy as all added', () => {
    expect(policyDiff(null, '{\n  "acls": []\n}\n')).toBe('@@ -0,0 +1,3 @@\n+{\n+  "acls": []\n+}\n')
  })

  it('shows a change with two lines of context and unified line numbers', () => {
    const before = lines(10)
    const after = before.replace('line 5\n', 'line five\n')
    expect(policyDiff(before, after)).toBe(
      ['@@ -4,5 +4,5 @@', ' line 3', ' line 4', '-line 5', '+line five', ' line 6', ' line 7', ''].join('\n'),
    )
  })

  it('joins changes closer than twice the context into one hunk and keeps far ones apart', () => {
    const before = lines(30)
    const after = before
      .replace('line 5\n', '')
      .replace('line 8\n', 'line 8\nnew\n')
      .replace('line 25\n', 'x\n')
    expect(policyDiff(before, after)).toBe(
      [
        '@@ -4,8 +4,8 @@',
        ' line 3',
        ' line 4',
        '-line 5',
        ' line 6',
        ' line 7',
        ' line 8',
        '+new',
        ' line 9',
        ' line 10',
        '@@ -24,5 +24,5 @@',
        ' line 23',
        ' line 24',
        '-line 25',
        '+x',
        ' line 26',
        ' line 27',
        '',
      ].join('\n'),
    )
  })

  it('stays bounded for texts that share nothing', () => {
    const started = performance.now()
    const out = policyDiff(
      lines(20_000, (i) => `a${i}`),
      lines(20_000, (i) => `b${i}`),
    )
    expect(performance.now() - started).toBeLessThan(5_000) // a bound on runaway, not a benchmark
    const outLines = out.trimEnd().split('\n')
    expect(outLines).toHaveLength(DIFF_LIMITS.lines)
    expect(outLines.at(-1)).toBe(`… ${40_000 - (DIFF_LIMITS.lines - 2)} more changed lines not shown`)
  })

  it('cuts long lines', () => {
    const out = policyDiff('x\n', `${'y'.repeat(1000)}\n`)
    expect(out.split('\n')[2]).toBe(`+${'y'.repeat(DIFF_LIMITS.lineChars)}…`)
  })
})
