// The text of `mesh config show`: values with their sources, unset values as their default's
// description, and one row for a file both readers saw alike.
import {describe, expect, it} from 'vitest'
import {configShowText} from './show.js'

describe('configShowText', () => {
  it('prints a table per program and one row per file and outcome', () => {
    const text = configShowText({
      settings: [
        {
          for: 'cli',
          key: 'daemon.socket',
          value: '/tmp/s.sock',
          source: 'env MESH_SOCKET',
          flag: '--socket',
          env: 'MESH_SOCKET',
          default: '/run/mesh/meshd.sock',
        },
        {
          for: 'controller',
          key: 'controller.database',
          value: null,
          source: 'default',
          flag: '--database',
          env: 'MESH_DATABASE',
          default: 'sqlite:DATA_DIR/mesh.db',
        },
      ],
      files: [
        {reader: 'cli', file: '/w/.meshrc.yaml', role: 'search', status: 'loaded'},
        {reader: 'cli', file: '/etc/mesh/config.yaml', role: 'system', status: 'absent'},
        {reader: 'service', file: '/etc/mesh/config.yaml', role: 'system', status: 'absent'},
      ],
    })
    expect(text.split('\n')).toEqual([
      'Settings of the mesh CLI:',
      'KEY            VALUE        SOURCE',
      'daemon.socket  /tmp/s.sock  env MESH_SOCKET',
      '',
      'Settings of mesh controller start:',
      'KEY                  VALUE                      SOURCE',
      'controller.database  (sqlite:DATA_DIR/mesh.db)  default',
      '',
      'Files:',
      'FILE                   READ BY                 AS      STATUS',
      '/w/.meshrc.yaml        CLI                     search  loaded',
      '/etc/mesh/config.yaml  CLI, meshd, controller  system  absent',
    ])
  })
})
