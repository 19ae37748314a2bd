import {afterEach, describe, expect, it, vi} from 'vitest'
import {startDaemon} from './main.js'

describe('startDaemon', () => {
  afterEach(() => vi.restoreAllMocks())

  it('refuses to run without root: ROOT_REQUIRED', async () => {
    vi.spyOn(process, 'getuid').mockReturnValue(1000)
    const err = await startDaemon({socket: '/nonexistent/x.sock', stateDir: '/nonexistent/state'}).catch(
      (e) => e,
    )
    expect(err.code).toBe('ROOT_REQUIRED')
    expect(err.exit).toBe(77)
  })

  it('refuses an interface prefix that leaves no room for a number in 15 characters', async () => {
    vi.spyOn(process, 'getuid').mockReturnValue(0)
    const err = await startDaemon({
      interfacePrefix: 'waytoolongprefix',
      stateDir: '/nonexistent/state',
    }).catch((e) => e)
    expect(err.code).toBe('INVALID_ARGUMENT')
  })
})
