// The full map's shared peer bytes: every node gets every active peer but itself, whatever its
// place in the list, as views into one buffer encoded once.
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {peerBlob, peersExcept} from './netmap.js'

const peers = (ids: string[]) =>
  new Map(ids.map((id) => [id, JSON.stringify({id, name: `n-${id}`, note: 'é'})]))

describe('full map peer bytes', () => {
  it('leaves out exactly the node itself, first, middle, last, alone or absent', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({minLength: 1, maxLength: 8}), {maxLength: 12}),
        fc.nat(),
        (ids, pick) => {
          const blob = peerBlob(peers(ids))
          const self = ids.length > 0 && pick % 3 !== 0 ? ids[pick % ids.length]! : 'not-a-peer'
          const json = `[${Buffer.concat(peersExcept(blob, self)).toString('utf8')}]`
          const got = (JSON.parse(json) as {id: string}[]).map((p) => p.id)
          expect(got).toEqual(ids.filter((id) => id !== self))
        },
      ),
      {numRuns: 500},
    )
  })

  it('shares the blob: the chunks are views, not copies', () => {
    const blob = peerBlob(peers(['a', 'b', 'c']))
    for (const chunk of peersExcept(blob, 'b')) expect(chunk.buffer).toBe(blob.bytes.buffer)
  })
})
