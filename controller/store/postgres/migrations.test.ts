// A schema version means the same on both backends: the migration lists must stay in step.
import {describe, expect, it} from 'vitest'
import {MIGRATIONS as SQLITE_MIGRATIONS} from '../sqlite/migrations.js'
import {MIGRATIONS} from './migrations.js'

describe('PostgreSQL migrations', () => {
  it('have the same names, in the same order, as the SQLite migrations', () => {
    expect(MIGRATIONS.map((m) => m.name)).toEqual(SQLITE_MIGRATIONS.map((m) => m.name))
  })
})
