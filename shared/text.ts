/**
 * Text from the network (a controller, meshd, a peer) on its way to a terminal, and the rule the
 * API uses to refuse such characters in free-text fields.
 *
 * A terminal obeys what it is sent: ESC and C1 sequences clear the screen, set the window title,
 * move the cursor or recolour text; a carriage return overwrites a line; bidi controls (U+202E,
 * U+2066...) show a name reversed; zero-width and soft-hyphen characters (U+200B, U+00AD) hide
 * the difference between two names that look alike. terminalText() is the one sanitizer for all
 * of it: every string from elsewhere goes through it before it is printed.
 */

/**
 * An escape sequence as terminals parse it: CSI (ESC [ ... final byte), OSC, DCS, SOS, PM and
 * APC strings (up to BEL or ESC \, or the end of the text), and two- or three-byte escapes.
 * The whole sequence becomes one "?", so an OSC's payload (a window title) is not printed and
 * the reader still sees that something was there.
 */
const ESC_SEQUENCE =
  /\u001B(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\u0007\u001B]*(?:\u0007|\u001B\\)?|[ -/]*[0-~]?)/g

/**
 * The characters that never reach a terminal as they are: controls (Cc: C0, DEL, C1), format
 * characters (Cf: bidi embeddings, overrides and isolates, zero-width space/joiners, soft
 * hyphen, BOM), line and paragraph separators (Zl, Zp) and lone surrogates (Cs; a surrogate in a
 * well-formed pair is part of another character and does not match).
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu
const UNSAFE_MULTILINE = /(?![\n\t])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu

/** What an unsafe character becomes: visible, one column, and plain ASCII. */
export const REPLACEMENT = '?'

/** Bold on and off, the only sequences the CLI's own table renderer writes. */
const BOLD_ON = '\u001B[1m'
const BOLD_OFF = '\u001B[0m'

export interface TerminalTextOptions {
  /** Keep line feeds and tabs (whole messages, rendered tables); otherwise one line. */
  multiline?: boolean
  /**
   * Let exactly ESC[1m and ESC[0m through (multi-line output of the CLI's own tables, whose
   * values were sanitized one by one before). Bold cannot move the cursor, hide text or talk to
   * the terminal; every other sequence is still removed.
   */
  allowBold?: boolean
  /** Longest result in code points; longer text ends in "…". */
  max?: number
}

/**
 * Makes text safe to print: each escape sequence, and every other unsafe character (see UNSAFE),
 * becomes one "?". null and undefined become ''.
 */
export function terminalText(value: unknown, opts: TerminalTextOptions = {}): string {
  if (value === null || value === undefined) return ''
  let text = String(value).replace(ESC_SEQUENCE, (seq) =>
    opts.allowBold && (seq === BOLD_ON || seq === BOLD_OFF) ? seq : REPLACEMENT,
  )
  const unsafe = opts.multiline ? UNSAFE_MULTILINE : UNSAFE
  if (opts.allowBold) {
    // Split around the kept sequences so their ESC is not replaced.
    text = text
      .split(/(\u001B\[[01]m)/)
      .map((part) => (part === BOLD_ON || part === BOLD_OFF ? part : part.replace(unsafe, REPLACEMENT)))
      .join('')
  } else {
    text = text.replace(unsafe, REPLACEMENT)
  }
  if (opts.max !== undefined) {
    const points = [...text]
    if (points.length > opts.max) text = `${points.slice(0, Math.max(0, opts.max - 1)).join('')}…`
  }
  return text
}

/**
 * JSON text whose unsafe characters inside strings are written as \uXXXX escapes: the same JSON
 * value (a parser reads back the exact characters), but nothing a terminal would act on. JSON
 * escapes C0 controls itself; this adds DEL, C1, format characters, separators and lone
 * surrogates. They can only occur inside strings, so the result is still valid JSON.
 */
export function jsonForTerminal(json: string): string {
  return json.replace(/[\u007F-\u009F\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu, (ch) =>
    Array.from({length: ch.length}, (_, i) => `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`).join(
      '',
    ),
  )
}

/**
 * The API's rule for free-text fields (hostname, OS, description): none of the characters a
 * terminal would act on or hide. Matches text that is acceptable.
 */
export const hasNoControlCharacters = (text: string): boolean =>
  !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(text)

/** The message the API gives when hasNoControlCharacters() refuses a field. */
export const CONTROL_CHARACTERS_MESSAGE =
  'must not contain control, format (bidi, zero-width, soft hyphen) or separator characters'
