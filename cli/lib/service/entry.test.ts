// The ExecStart program: the node + script that run this mesh, or the single executable alone.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {currentEntryProbe, meshEntry} from './entry.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, {recursive: true, force: true})
})

describe('meshEntry', () => {
  it('under node is node and the script, both absolute and free of symlinks', () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-entry-')))
    dirs.push(dir)
    fs.mkdirSync(path.join(dir, 'lib/mesh/bin'), {recursive: true})
    fs.writeFileSync(path.join(dir, 'lib/mesh/bin/mesh.js'), '')
    fs.mkdirSync(path.join(dir, 'bin'))
    fs.symlinkSync('../lib/mesh/bin/mesh.js', path.join(dir, 'bin/mesh')) // an npm bin link
    expect(meshEntry({execPath: process.execPath, script: path.join(dir, 'bin/mesh'), sea: false})).toEqual([
      fs.realpathSync(process.execPath),
      path.join(dir, 'lib/mesh/bin/mesh.js'),
    ])
  })

  it('resolves a relative script against the working directory', () => {
    const entry = meshEntry({execPath: '/n/node', script: 'bin/mesh.js', sea: false, realpath: (p) => p})
    expect(entry).toEqual(['/n/node', path.resolve('bin/mesh.js')])
  })

  it('as a single executable is the executable alone (argv[1] is then a user argument)', () => {
    expect(
      meshEntry({execPath: '/usr/local/bin/mesh', script: 'daemon', sea: true, realpath: (p) => p}),
    ).toEqual(['/usr/local/bin/mesh'])
  })

  it('fails clearly when there is no script to name', () => {
    expect(() => meshEntry({execPath: '/n/node', script: undefined, sea: false})).toThrow(/argv\[1\]/)
  })

  it('this test process is not a single executable', () => {
    expect(currentEntryProbe().sea).toBe(false)
  })
})
