// Freshness of generated artefacts: the oclif manifest, man pages and completions must equal what
// the build writes now, and the error page must list exactly the codes of shared/errors.ts.
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {ERRORS} from '../shared/errors.js'
import {renderAll, type Manifest} from '../scripts/gen-docs.js'

const root = path.resolve(import.meta.dirname, '..')
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'oclif.manifest.json'), 'utf8')) as Manifest

function commandFiles(dir: string, prefix: string[] = []): string[] {
  return fs.readdirSync(dir, {withFileTypes: true}).flatMap((entry) => {
    if (entry.isDirectory()) return commandFiles(path.join(dir, entry.name), [...prefix, entry.name])
    if (!/\.tsx?$/.test(entry.name) || /\.test\.tsx?$/.test(entry.name)) return []
    const name = entry.name.replace(/\.tsx?$/, '')
    return [[...prefix, ...(name === 'index' ? [] : [name])].join(':')]
  })
}

describe('generated files', () => {
  it('oclif.manifest.json lists exactly the command files', () => {
    expect(Object.keys(manifest.commands).sort()).toEqual(
      commandFiles(path.join(root, 'cli', 'commands')).sort(),
    )
  })

  it.each([...renderAll(manifest).keys()])('%s equals what the generator writes now', (rel) => {
    const expected = renderAll(manifest).get(rel)
    expect(fs.readFileSync(path.join(root, rel), 'utf8')).toBe(expected)
  })

  it('mesh-errors.7 documents every error code and no other', () => {
    const page = fs.readFileSync(path.join(root, 'man', 'mesh-errors.7'), 'utf8')
    const documented = [...page.matchAll(/^\.B ([A-Z][A-Z0-9_]+)$/gm)].map((m) => m[1])
    expect(documented.sort()).toEqual(Object.keys(ERRORS).sort())
  })

  it('every error has a one-line message and hint and a documented exit code', () => {
    const page = fs.readFileSync(path.join(root, 'man', 'mesh-errors.7'), 'utf8')
    for (const [code, spec] of Object.entries(ERRORS)) {
      expect(spec.message, code).not.toMatch(/\n|\.$/)
      expect(spec.hint, code).not.toMatch(/\n/)
      expect(page, code).toMatch(new RegExp(`^\\.B ${spec.exit}$`, 'm'))
    }
  })

  it.runIf(fs.existsSync('/usr/bin/mandoc'))('man pages pass mandoc -Tlint', () => {
    const pages = fs.readdirSync(path.join(root, 'man')).map((f) => path.join(root, 'man', f))
    expect(() => execFileSync('mandoc', ['-Tlint', '-Wwarning', ...pages], {stdio: 'pipe'})).not.toThrow()
  })

  it('the bash completion parses', () => {
    expect(() => execFileSync('bash', ['-n', path.join(root, 'completions', 'mesh.bash')])).not.toThrow()
  })
})
