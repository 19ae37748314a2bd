/**
 * Base class of the commands that talk to meshd (join, up, down, leave, status, ip): the
 * --socket flag (MESH_SOCKET) and a DaemonClient for it.
 */
import {Flags} from '@oclif/core'
import {defaultSocketPath} from '../../shared/paths.js'
import {DaemonClient} from './daemon-client.js'
import {MeshCommand} from './mesh-command.js'

export abstract class DaemonCommand extends MeshCommand {
  static override baseFlags = {
    ...MeshCommand.baseFlags,
    socket: Flags.string({
      description: "meshd's unix socket [default: /run/mesh/meshd.sock]",
      env: 'MESH_SOCKET',
      helpGroup: 'GLOBAL',
    }),
  }

  /** The client for the socket named by --socket, MESH_SOCKET or the default. */
  protected connect(flags: {socket?: string | undefined}): DaemonClient {
    return new DaemonClient({socketPath: flags.socket ?? defaultSocketPath()})
  }
}
