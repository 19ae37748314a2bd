// Unit tests of the flag-to-request builders of the admin commands.
import {describe, expect, it} from 'vitest'
import {authKeyRequest, inviteRequest, networkUpdate, parseMaxNodes} from './admin.js'

describe('networkUpdate', () => {
  it('holds only the fields that were given', () => {
    expect(networkUpdate({description: 'lab'})).toEqual({description: 'lab'})
    expect(networkUpdate({policy: 'approval', 'max-nodes': '10'})).toEqual({
      joinPolicy: 'approval',
      maxNodes: 10,
    })
  })

  it('keeps an empty description: clearing it is a change', () => {
    expect(networkUpdate({description: ''})).toEqual({description: ''})
  })

  it('clears the node cap with unlimited', () => {
    expect(networkUpdate({'max-nodes': 'unlimited'})).toEqual({maxNodes: null})
  })

  it('refuses a set with nothing to change', () => {
    expect(() => networkUpdate({})).toThrow(expect.objectContaining({code: 'INVALID_ARGUMENT'}))
  })
})

describe('parseMaxNodes', () => {
  it('refuses zero, negatives and words', () => {
    for (const bad of ['0', '-3', 'ten', '1.5', '']) {
      expect(() => parseMaxNodes(bad), bad).toThrow(expect.objectContaining({code: 'INVALID_ARGUMENT'}))
    }
  })
})

describe('inviteRequest', () => {
  it('defaults to one use and turns --expires into seconds', () => {
    expect(inviteRequest({expires: '7d', unlimited: false, role: 'member'})).toEqual({
      expiresIn: 604_800,
      maxUses: 1,
      role: 'member',
    })
  })

  it('sends maxUses null for --unlimited', () => {
    expect(inviteRequest({expires: '1h', unlimited: true, role: 'guest'}).maxUses).toBeNull()
  })
})

describe('authKeyRequest', () => {
  it('maps the switches and drops repeated tags', () => {
    expect(
      authKeyRequest({
        reusable: true,
        ephemeral: false,
        'pre-approved': true,
        tag: ['tag:ci', 'tag:ci', 'tag:x'],
        expires: '90d',
      }),
    ).toEqual({
      reusable: true,
      ephemeral: false,
      preApproved: true,
      tags: ['tag:ci', 'tag:x'],
      expiresIn: 90 * 86_400,
    })
  })
})
