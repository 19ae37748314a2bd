// A small renderer of plain, aligned text tables for people (scripts use --json instead).
import {terminalText} from '../../../shared/text.js'

export interface Column<T> {
  header: string
  get: (row: T) => string | number | boolean | null | undefined
  /** Right-align numbers so their digits line up. */
  align?: 'left' | 'right'
}

export interface TableOptions {
  /** Bold headers with ANSI escapes; callers pass true only when stdout is a colour terminal. */
  color?: boolean
  /** Printed instead of a header-only table when there are no rows. */
  empty?: string
}

const BOLD = '\u001B[1m'
const RESET = '\u001B[0m'

// Values come from the controller or meshd: terminalText() keeps each cell on one line and
// turns escape sequences, controls, bidi and invisible characters into "?", so a crafted name can
// neither drive the terminal nor pass for another name.
const cell = (v: string | number | boolean | null | undefined): string =>
  v === null || v === undefined || v === '' ? '-' : terminalText(v)

/**
 * Columns separated by two spaces, each as wide as its widest cell, no trailing spaces.
 * Widths count code points; wide (CJK) characters may misalign, which is acceptable here.
 */
export function renderTable<T>(
  rows: readonly T[],
  columns: readonly Column<T>[],
  opts: TableOptions = {},
): string {
  if (rows.length === 0 && opts.empty !== undefined) return opts.empty
  const header = columns.map((c) => c.header)
  const body = rows.map((r) => columns.map((c) => cell(c.get(r))))
  const widths = columns.map((_, i) => Math.max(...[header, ...body].map((line) => [...line[i]!].length)))
  const pad = (text: string, i: number): string => {
    const fill = ' '.repeat(widths[i]! - [...text].length)
    return columns[i]!.align === 'right' ? fill + text : text + fill
  }
  const line = (cells: string[]): string => cells.map(pad).join('  ').replace(/\s+$/, '')
  const head = line(header)
  return [opts.color ? BOLD + head + RESET : head, ...body.map(line)].join('\n')
}

/** Key/value lines for `show` commands: labels padded to one width. */
export function renderFields(
  fields: readonly [string, string | number | boolean | null | undefined][],
): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length))
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width + 1)}  ${cell(v)}`).join('\n')
}

/** Whether stdout may carry ANSI colour: a terminal, and NO_COLOR (no-color.org) unset. */
export const stdoutColor = (): boolean =>
  Boolean(process.stdout.isTTY) && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb'
