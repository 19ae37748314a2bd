import {describe, expect, it} from 'vitest'
import {nodeVersionProblem} from './node-version.js'

describe('nodeVersionProblem', () => {
  it.each(['24.0.0', '24.21.0', '25.1.0'])('accepts Node %s', (v) => {
    expect(nodeVersionProblem(v)).toBeUndefined()
  })
  it.each(['20.20.2', '22.23.3', 'garbage'])('refuses Node %s naming the version it found', (v) => {
    expect(nodeVersionProblem(v)).toContain(v)
  })
})
