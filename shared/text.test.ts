import {describe, expect, it} from 'vitest'
import {hasNoControlCharacters, jsonForTerminal, terminalText} from './text.js'

/** Every character that must never reach a terminal as it is, by name. */
const UNSAFE: [string, string][] = [
  ['U+202E RIGHT-TO-LEFT OVERRIDE', '\u202E'],
  ['U+202A LEFT-TO-RIGHT EMBEDDING', '\u202A'],
  ['U+2066 LEFT-TO-RIGHT ISOLATE', '\u2066'],
  ['U+2067 RIGHT-TO-LEFT ISOLATE', '\u2067'],
  ['U+2069 POP DIRECTIONAL ISOLATE', '\u2069'],
  ['U+200E LEFT-TO-RIGHT MARK', '\u200E'],
  ['U+200B ZERO WIDTH SPACE', '\u200B'],
  ['U+200D ZERO WIDTH JOINER', '\u200D'],
  ['U+2060 WORD JOINER', '\u2060'],
  ['U+FEFF BYTE ORDER MARK', '\uFEFF'],
  ['U+00AD SOFT HYPHEN', '\u00AD'],
  ['U+2028 LINE SEPARATOR', '\u2028'],
  ['U+2029 PARAGRAPH SEPARATOR', '\u2029'],
  ['U+0000 NUL', '\u0000'],
  ['U+0007 BEL', '\u0007'],
  ['U+0008 BACKSPACE', '\u0008'],
  ['U+000D CARRIAGE RETURN', '\r'],
  ['U+007F DELETE', '\u007F'],
  ['U+009B CSI (C1)', '\u009B'],
  ['U+009D OSC (C1)', '\u009D'],
  ['lone high surrogate U+D800', '\uD800'],
  ['lone low surrogate U+DC00', '\uDC00'],
  ['U+E0001 LANGUAGE TAG (astral format character)', '\u{E0001}'],
]

describe('terminalText', () => {
  it.each(UNSAFE)('replaces %s with a visible "?"', (_name, ch) => {
    const out = terminalText(`ab${ch}cd`)
    expect(out).toBe('ab?cd')
    expect(terminalText(`ab${ch}cd`, {multiline: true})).toBe('ab?cd')
  })

  it('turns each escape sequence, payload included, into one "?"', () => {
    expect(terminalText('a\u001B]0;pwned\u0007b')).toBe('a?b') // OSC: window title, BEL-terminated
    expect(terminalText('a\u001B]0;pwned\u001B\\b')).toBe('a?b') // OSC, ST-terminated
    expect(terminalText('a\u001B[2Jb')).toBe('a?b') // CSI: clear screen
    expect(terminalText('a\u001B[38;5;196mb')).toBe('a?b') // CSI: colour
    expect(terminalText('a\u001BPq#0;2;0;0;0\u001B\\b')).toBe('a?b') // DCS (sixel)
    expect(terminalText('a\u001Bcb')).toBe('a?b') // RIS: reset the terminal
    expect(terminalText('a\u001B(0b')).toBe('a?b') // charset switch
    expect(terminalText('a\u001B')).toBe('a?') // a lone ESC at the end
    expect(terminalText('\u001B]0;pwned\u0007\u001B[2J\u202Eevil')).toBe('???evil')
  })

  it('keeps one line unless asked for several; multi-line keeps line feeds and tabs only', () => {
    expect(terminalText('a\nb\tc')).toBe('a?b?c')
    expect(terminalText('a\nb\tc\r\n', {multiline: true})).toBe('a\nb\tc?\n')
  })

  it('leaves ordinary text alone: accents, CJK, emoji (surrogate pairs), punctuation', () => {
    const text = 'café 漢字 😀 naïve-host_1.example, "quoted" 100% {ok}'
    expect(terminalText(text)).toBe(text)
  })

  it('lets exactly bold on/off through when allowed, and no other sequence', () => {
    const head = '\u001B[1mNAME\u001B[0m\nx\u001B[31my\u001B[8mz'
    expect(terminalText(head, {multiline: true, allowBold: true})).toBe('\u001B[1mNAME\u001B[0m\nx?y?z')
    expect(terminalText(head, {multiline: true})).toBe('?NAME?\nx?y?z')
  })

  it('cuts long text to max code points, ending in an ellipsis', () => {
    expect(terminalText('x'.repeat(5000), {max: 10})).toBe(`${'x'.repeat(9)}…`)
    expect(terminalText('short', {max: 10})).toBe('short')
  })

  it('prints null and undefined as nothing, and numbers as they are', () => {
    expect(terminalText(null)).toBe('')
    expect(terminalText(undefined)).toBe('')
    expect(terminalText(42)).toBe('42')
  })
})

describe('jsonForTerminal', () => {
  it.each(UNSAFE)('writes %s as \\u escapes and keeps the exact JSON value', (_name, ch) => {
    const value = {hostname: `ab${ch}cd`, list: [`${ch}`]}
    const text = jsonForTerminal(JSON.stringify(value, null, 2))
    expect(JSON.parse(text)).toEqual(value)
    expect(terminalText(text, {multiline: true})).toBe(text)
  })

  it('leaves ordinary JSON byte for byte', () => {
    const text = JSON.stringify({name: 'café 漢字 😀', n: 1, ok: true}, null, 2)
    expect(jsonForTerminal(text)).toBe(text)
  })
})

describe('hasNoControlCharacters (the API rule for hostname, OS and description)', () => {
  it.each(UNSAFE)('refuses %s', (_name, ch) => {
    expect(hasNoControlCharacters(`host${ch}name`)).toBe(false)
  })

  it('refuses line feeds and tabs too, and accepts ordinary text', () => {
    expect(hasNoControlCharacters('a\nb')).toBe(false)
    expect(hasNoControlCharacters('a\tb')).toBe(false)
    expect(hasNoControlCharacters('laptop.example.com')).toBe(true)
    expect(hasNoControlCharacters('Ubuntu 24.04 LTS (漢字, café) 😀')).toBe(true)
    expect(hasNoControlCharacters('')).toBe(true)
  })
})
