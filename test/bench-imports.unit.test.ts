// The benchmarks (bench/*.mjs) run on plain Node, which loads TypeScript by stripping types and
// resolves imports literally: a .ts file they import must import its own siblings as './x.ts',
// never './x.js' (vitest maps those; Node does not). Each .ts file a benchmark imports is loaded
// here the way the benchmark loads it.
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {ROOT} from './cli-runner.js'

const benchDir = path.join(ROOT, 'bench')
const imported = new Set<string>()
for (const dir of [benchDir, path.join(benchDir, 'lib')]) {
  if (!fs.existsSync(dir)) continue
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.mjs'))) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8')
    for (const m of text.matchAll(/(?:import\(|from )'(\.{1,2}\/[^']+\.ts)'/g))
      imported.add(path.resolve(dir, m[1] as string))
  }
}

describe('TypeScript modules the benchmarks import', () => {
  it('finds them (the scan itself works)', () => {
    expect([...imported].map((p) => path.relative(ROOT, p))).toContain('test/support/postgres.ts')
  })
  for (const file of imported) {
    it(`loads ${path.relative(ROOT, file)} with plain Node`, () => {
      // Throws (with Node's error) when an import does not resolve.
      execFileSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(file)})`], {
        cwd: ROOT,
        stdio: 'pipe',
        timeout: 30_000,
      })
    })
  }
})
