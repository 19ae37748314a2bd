// A controller on a disk that fills up (root: a 4 MiB tmpfs of this run's own): writes answer
// 503 STORAGE_FULL (never 500), /readyz fails with STORAGE_FULL while writes cannot commit, and
// once the filler file is removed, writes and /readyz recover by themselves, no write that got
// its 201 is lost and the database passes PRAGMA integrity_check.
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {client, type Client} from '../../testing/client.js'
import {startTestController, type TestController} from '../../testing/test-controller.js'

function skipReason(): string | undefined {
  if (process.platform !== 'linux') return 'Linux only'
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs'
  return undefined
}
const skip = skipReason()

describe.skipIf(skip !== undefined)(
  `a controller whose disk fills up${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let mountDir: string | undefined
    let mounted = false
    let ctl: TestController | undefined
    let api: Client
    const filler = () => path.join(mountDir!, 'filler')

    beforeAll(async () => {
      mountDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-fulldisk-'))
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mountDir])
      mounted = true
      ctl = await startTestController({dataDir: path.join(mountDir, 'controller')})
      api = client(ctl.url)
    })
    afterAll(async () => {
      await ctl?.close().catch(() => undefined)
      if (mounted) execFileSync('umount', [mountDir!])
      if (mountDir) fs.rmSync(mountDir, {recursive: true, force: true})
    })

    /** Writes the filler until the file system refuses; returns the bytes written. */
    function fillDisk(): number {
      const fd = fs.openSync(filler(), 'a')
      let written = 0
      try {
        // 4 MiB at most in 64 KiB, then 4 KiB pieces: bounded by the tmpfs size.
        for (const piece of [64 * 1024, 4 * 1024]) {
          const buf = Buffer.alloc(piece, 0x5a)
          for (let i = 0; i < (4 * 1024 * 1024) / piece + 1; i++) {
            try {
              written += fs.writeSync(fd, buf)
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
              break
            }
          }
        }
      } finally {
        fs.closeSync(fd)
      }
      return written
    }

    it('answers 503 STORAGE_FULL while full, fails /readyz, and recovers without loss once space is freed', async () => {
      const token = ctl!.adminToken
      let octet = 0
      const created: string[] = []
      const createNetwork = async () => {
        const name = `disk-${++octet}`
        const r = await api.req('POST', '/api/v1/networks', {
          token,
          body: {name, cidr: `10.${octet}.0.0/24`, description: 'd'.repeat(400)},
        })
        if (r.status === 201) created.push(name)
        return r
      }
      expect((await createNetwork()).status).toBe(201)
      expect((await api.req('GET', '/readyz')).status).toBe(200)

      expect(fillDisk()).toBeGreaterThan(0)
      // Writes that still fit in pages the database already owns may pass; the first one that
      // needs room fails, and from then on every one does — never with a 500.
      let refused: Awaited<ReturnType<typeof createNetwork>> | undefined
      for (let i = 0; i < 200 && !refused; i++) {
        const r = await createNetwork()
        if (r.status !== 201) refused = r
      }
      expect(refused, 'no write failed on a full disk').toBeDefined()
      expect([refused!.status, refused!.body.error.code]).toEqual([503, 'STORAGE_FULL'])
      expect(refused!.body.error.hint).toBe(
        'free disk space on the controller host; writes resume by themselves',
      )
      expect(refused!.headers.get('retry-after')).toBe('30')
      const again = await createNetwork()
      expect([again.status, again.body.error?.code]).toEqual([503, 'STORAGE_FULL'])

      const notReady = await api.req('GET', '/readyz')
      expect([notReady.status, notReady.body.status, notReady.body.error?.code]).toEqual([
        503,
        'unavailable',
        'STORAGE_FULL',
      ])

      // Space freed: writes and readiness come back by themselves, no restart.
      fs.rmSync(filler())
      const ready = await api.req('GET', '/readyz')
      expect(ready.status, ready.text).toBe(200)
      const after = await createNetwork()
      expect(after.status, after.text).toBe(201)
      const login = await api.req('POST', '/api/v1/login', {
        body: {username: 'admin', password: ctl!.adminPassword},
      })
      expect(login.status, login.text).toBe(200)

      // Every network that got its 201 is there, none of the refused ones; the file is sound.
      const listed = await api.req('GET', '/api/v1/networks?limit=500', {token})
      const names = (listed.body.items as {name: string}[])
        .map((n) => n.name)
        .filter((n) => n.startsWith('disk-'))
      expect(names.sort()).toEqual([...created].sort())
      const check = new Database(ctl!.dbPath, {readonly: true})
      try {
        expect(check.pragma('integrity_check', {simple: true})).toBe('ok')
      } finally {
        check.close()
      }
    })
  },
)
