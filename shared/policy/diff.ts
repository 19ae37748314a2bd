/**
 * A short unified-style line diff of two policy texts, for the audit entry of a policy change.
 * Bounded in time and size whatever the texts: Myers' O(ND) algorithm (E. Myers, "An O(ND)
 * Difference Algorithm and Its Variations", 1986) up to MAX_EDITS edits, beyond which the
 * changed middle is shown as removed-then-added (still a correct diff, only not minimal), and
 * the output is cut at DIFF_LIMITS with a line saying how much was left out.
 */

export const DIFF_LIMITS = {
  /** Output lines (hunk headers included) before the rest is summarised. */
  lines: 200,
  /** Characters of one text line shown; longer ones end in "…". */
  lineChars: 200,
  /** Edits the minimal diff may need before we settle for a plain replace of the middle. */
  edits: 1000,
  /** Unchanged lines shown around each change. */
  context: 2,
} as const

type Op = {readonly kind: ' ' | '-' | '+'; readonly text: string; readonly a: number; readonly b: number}

const splitLines = (text: string): string[] => {
  const lines = text.split(/\r\n|\r|\n/)
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  return lines
}

/**
 * The diff from `before` (null: there was no policy) to `after`, as `@@ -a,n +b,m @@` hunks
 * with DIFF_LIMITS.context lines of context; empty when the texts have the same lines.
 */
export function policyDiff(before: string | null, after: string): string {
  const a = before === null ? [] : splitLines(before)
  const b = splitLines(after)
  const ops = diffLines(a, b)
  if (!ops.some((o) => o.kind !== ' ')) return ''
  return render(ops)
}

/** Steps: 1. strip the common head and tail; 2. Myers on the middle, bounded; 3. put them together. */
function diffLines(a: readonly string[], b: readonly string[]): Op[] {
  // 1.
  let head = 0
  while (head < a.length && head < b.length && a[head] === b[head]) head++
  let tail = 0
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++
  const am = a.slice(head, a.length - tail)
  const bm = b.slice(head, b.length - tail)
  const ops: Op[] = []
  for (let i = 0; i < head; i++) ops.push({kind: ' ', text: a[i]!, a: i, b: i})
  // 2.
  const middle = myers(am, bm) ?? [
    ...am.map((text, i): Op => ({kind: '-', text, a: i, b: 0})),
    ...bm.map((text, j): Op => ({kind: '+', text, a: am.length, b: j})),
  ]
  // 3.
  for (const o of middle) ops.push({...o, a: o.a + head, b: o.b + head})
  for (let i = tail; i > 0; i--) {
    ops.push({kind: ' ', text: a[a.length - i]!, a: a.length - i, b: b.length - i})
  }
  return ops
}

/** Myers' greedy forward algorithm with a trace for the edit script; undefined past DIFF_LIMITS.edits. */
function myers(a: readonly string[], b: readonly string[]): Op[] | undefined {
  const n = a.length
  const m = b.length
  const max = Math.min(n + m, DIFF_LIMITS.edits)
  const offset = max + 1
  const v = new Int32Array(2 * max + 3)
  const trace: Int32Array[] = []
  let found = -1
  for (let d = 0; d <= max && found < 0; d++) {
    trace.push(v.slice())
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1
      let y = x - k
      while (x < n && y < m && a[x] === b[y]) {
        x++
        y++
      }
      v[offset + k] = x
      if (x >= n && y >= m) {
        found = d
        break
      }
    }
  }
  if (found < 0) return undefined
  // Walk the trace back from (n, m).
  const ops: Op[] = []
  let x = n
  let y = m
  for (let d = found; d > 0; d--) {
    const vd = trace[d]!
    const k = x - y
    const down = k === -d || (k !== d && vd[offset + k - 1]! < vd[offset + k + 1]!)
    const prevK = down ? k + 1 : k - 1
    const prevX = vd[offset + prevK]!
    const prevY = prevX - prevK
    while (x > prevX && y > prevY) {
      x--
      y--
      ops.push({kind: ' ', text: a[x]!, a: x, b: y})
    }
    if (down) {
      y--
      ops.push({kind: '+', text: b[y]!, a: x, b: y})
    } else {
      x--
      ops.push({kind: '-', text: a[x]!, a: x, b: y})
    }
  }
  while (x > 0 && y > 0) {
    x--
    y--
    ops.push({kind: ' ', text: a[x]!, a: x, b: y})
  }
  return ops.reverse()
}

const clip = (line: string): string =>
  line.length > DIFF_LIMITS.lineChars ? `${line.slice(0, DIFF_LIMITS.lineChars)}…` : line

/** Hunks of changes with context, cut at DIFF_LIMITS.lines. */
function render(ops: readonly Op[]): string {
  const out: string[] = []
  const {context} = DIFF_LIMITS
  let i = 0
  let left = 0
  while (i < ops.length) {
    if (ops[i]!.kind === ' ') {
      i++
      continue
    }
    // A hunk: from `context` lines before this change to `context` lines after the last change
    // that is within 2 × context of the one before it.
    const start = Math.max(0, i - context)
    let end = i
    while (end < ops.length) {
      if (ops[end]!.kind !== ' ') {
        end++
        continue
      }
      let run = end
      while (run < ops.length && ops[run]!.kind === ' ') run++
      if (run < ops.length && run - end <= 2 * context) end = run
      else {
        end = Math.min(run, end + context)
        break
      }
    }
    const hunk = ops.slice(start, end)
    const aLines = hunk.filter((o) => o.kind !== '+').length
    const bLines = hunk.filter((o) => o.kind !== '-').length
    const aStart = hunk[0]!.a + (aLines > 0 ? 1 : 0)
    const bStart = hunk[0]!.b + (bLines > 0 ? 1 : 0)
    out.push(`@@ -${aStart},${aLines} +${bStart},${bLines} @@`)
    for (const o of hunk) out.push(`${o.kind}${clip(o.text)}`)
    i = end
  }
  if (out.length > DIFF_LIMITS.lines) {
    const rest = out.slice(DIFF_LIMITS.lines - 1)
    left = rest.filter((l) => l.startsWith('-') || l.startsWith('+')).length
    out.length = DIFF_LIMITS.lines - 1
    out.push(`… ${left} more changed line${left === 1 ? '' : 's'} not shown`)
  }
  return out.join('\n') + '\n'
}
