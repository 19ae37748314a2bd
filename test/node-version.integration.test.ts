// The built CLI refuses to start on an old Node with a clear error and exit 78 (EX_CONFIG),
// instead of crashing inside better-sqlite3. Uses the machine's own Node 20 when it has one.
import {execFileSync, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {describe, expect, it} from 'vitest'

const root = path.resolve(import.meta.dirname, '..')
const OLD_NODE = '/usr/bin/node'
const oldMajor = fs.existsSync(OLD_NODE)
  ? Number(execFileSync(OLD_NODE, ['-p', 'process.versions.node'], {encoding: 'utf8'}).split('.')[0])
  : undefined

describe('Node version gate', () => {
  it.runIf(oldMajor !== undefined && oldMajor < 24)(
    'refuses an old Node with NODE_VERSION_UNSUPPORTED and exit 78',
    () => {
      const res = spawnSync(OLD_NODE, [path.join(root, 'bin', 'mesh.js'), '--version'], {encoding: 'utf8'})
      expect(res.status).toBe(78)
      expect(res.stderr).toContain('NODE_VERSION_UNSUPPORTED')
      expect(res.stderr).toMatch(/needs Node\.js 24 or newer/)
    },
  )

  it('starts on the pinned Node and prints its version', () => {
    const res = spawnSync(process.execPath, [path.join(root, 'bin', 'mesh.js'), '--version'], {
      encoding: 'utf8',
    })
    expect(res.status).toBe(0)
    expect(res.stdout).toMatch(/^mesh\/0\.1\.0 /)
  })
})
