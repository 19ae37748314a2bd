// The dependency rule, checked on the source graph (tailscale's deptest): cli, daemon and
// controller import only shared/ (and packages), never each other; shared/ imports none of them.
// The allowed edges are the lazy imports of each program's main entries (controller/main.ts,
// daemon/main.ts, and controller/relay/main.ts for the stand-alone relay).
import fs from 'node:fs'
import path from 'node:path'
import {describe, expect, it} from 'vitest'

const root = path.resolve(import.meta.dirname, '..')
const PROGRAMS = ['cli', 'daemon', 'controller', 'shared'] as const
type Area = (typeof PROGRAMS)[number]

const ALLOWED_EDGES = new Set([
  'cli/commands/daemon/run.ts -> daemon/main.ts',
  'cli/commands/controller/start.ts -> controller/main.ts',
  'cli/commands/controller/backup.ts -> controller/main.ts',
  'cli/commands/controller/restore.ts -> controller/main.ts',
  // The stand-alone relay's own entry: a relay loads the relay code, not the controller's store.
  'cli/commands/relay/start.ts -> controller/relay/main.ts',
  'cli/commands/relay/key/create.ts -> controller/relay/main.ts',
])

/** Production sources only: tests and testing/ harnesses may cross programs on purpose. */
function sources(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), {withFileTypes: true}).flatMap((e) => {
    const rel = path.join(dir, e.name)
    if (e.isDirectory()) return e.name === 'testing' ? [] : sources(rel)
    return /\.tsx?$/.test(e.name) && !/\.test\.tsx?$/.test(e.name) ? [rel] : []
  })
}

const IMPORT_RE =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm

export function importsOf(file: string): string[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8')
  return [...text.matchAll(IMPORT_RE)].map((m) => m[1] ?? m[2] ?? m[3]!).filter((s) => s.startsWith('.'))
}

const areaOf = (rel: string): Area | undefined => PROGRAMS.find((p) => rel === p || rel.startsWith(`${p}/`))

describe('dependency direction', () => {
  const files = PROGRAMS.filter((p) => fs.existsSync(path.join(root, p))).flatMap((p) => sources(p))

  it('finds the sources it checks', () => {
    expect(files.length).toBeGreaterThan(5)
    expect(importsOf('shared/protocol/netmap.ts')).toContain('./control-api.js')
  })

  it('has no edge from one program into another beyond the two main entries', () => {
    const bad: string[] = []
    for (const file of files) {
      const from = areaOf(file)!
      for (const spec of importsOf(file)) {
        const target = path
          .relative(root, path.resolve(root, path.dirname(file), spec))
          .replace(/\.js$/, '.ts')
        const to = areaOf(target)
        if (!to || to === from || to === 'shared') {
          if (from === 'shared' && to && to !== 'shared') bad.push(`${file} -> ${target}`)
          continue
        }
        const edge = `${file} -> ${target}`
        if (!ALLOWED_EDGES.has(edge)) bad.push(edge)
      }
    }
    expect(bad).toEqual([])
  })
})
