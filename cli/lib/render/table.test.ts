// Unit tests of the plain-text table renderer.
import {describe, expect, it} from 'vitest'
import {renderFields, renderTable, type Column} from './table.js'

interface Row {
  name: string
  nodes: number
  note: string | null
}
const columns: Column<Row>[] = [
  {header: 'NAME', get: (r) => r.name},
  {header: 'NODES', get: (r) => r.nodes, align: 'right'},
  {header: 'NOTE', get: (r) => r.note},
]

describe('renderTable', () => {
  it('aligns columns to the widest cell with two spaces between them', () => {
    const out = renderTable(
      [
        {name: 'home', nodes: 3, note: 'lab'},
        {name: 'production', nodes: 120, note: 'main site'},
      ],
      columns,
    )
    expect(out).toBe(
      ['NAME        NODES  NOTE', 'home            3  lab', 'production    120  main site'].join('\n'),
    )
  })

  it('leaves no trailing spaces and shows empty or null cells as a dash', () => {
    const out = renderTable([{name: 'a', nodes: 0, note: null}], columns)
    expect(out.split('\n')[1]).toBe('a         0  -')
    for (const line of out.split('\n')) expect(line).not.toMatch(/\s$/)
  })

  it('prints only the header for no rows, or the empty text when given', () => {
    expect(renderTable([], columns)).toBe('NAME  NODES  NOTE')
    expect(renderTable([], columns, {empty: 'No networks.'})).toBe('No networks.')
  })

  it('uses no escape sequences unless colour is asked for', () => {
    const rows = [{name: 'a', nodes: 1, note: 'x'}]
    expect(renderTable(rows, columns)).not.toContain('\u001B')
    expect(renderTable(rows, columns, {color: true}).split('\n')[0]).toBe(
      '\u001B[1mNAME  NODES  NOTE\u001B[0m',
    )
  })

  it('replaces control characters from server data so they cannot reach the terminal', () => {
    const out = renderTable([{name: 'evil\u001B[2J\nname', nodes: 1, note: 'tab\there'}], columns)
    expect(out).not.toContain('\u001B')
    expect(out.split('\n')).toHaveLength(2)
    expect(out).toContain('evil??name')
  })

  it('counts code points, not UTF-16 units, when padding', () => {
    const out = renderTable(
      [
        {name: 'café✓', nodes: 1, note: 'x'},
        {name: 'ab', nodes: 2, note: 'y'},
      ],
      columns,
    )
    const [, first, second] = out.split('\n')
    expect(first!.indexOf('1')).toBe(second!.indexOf('2'))
  })
})

describe('renderFields', () => {
  it('pads labels to one width', () => {
    expect(
      renderFields([
        ['name', 'home'],
        ['description', ''],
        ['max nodes', null],
      ]),
    ).toBe(['name:         home', 'description:  -', 'max nodes:    -'].join('\n'))
  })
})
