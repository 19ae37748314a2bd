/**
 * Base class of the commands that talk to meshd (join, up, down, leave, status, ip): the
 * --socket flag and a DaemonClient for it. The socket is resolved like every setting:
 * --socket, else MESH_SOCKET, else `daemon.socket` in a config file, else the default.
 */
import type {Interfaces} from '@oclif/core'
import {type Resolved, cliSetting, configFlag, loadCliFiles, settingFlag} from './config/index.js'
import type {LoadedFiles} from './config/files.js'
import {DaemonClient} from './daemon-client.js'
import {MeshCommand} from './mesh-command.js'

// oclif's FlagOutput and ArgOutput, which @oclif/core does not export: parse() keeps its signature.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Output = Record<string, any>

export abstract class DaemonCommand extends MeshCommand {
  static override baseFlags = {
    ...MeshCommand.baseFlags,
    socket: settingFlag.string('daemon.socket', {helpGroup: 'GLOBAL'}),
    config: configFlag(),
  }

  /** The config files of this run, loaded by parse() (so a bad file fails before any work). */
  private configFiles: LoadedFiles | undefined

  protected override async parse<F extends Output, B extends Output, A extends Output>(
    options?: Interfaces.Input<F, B, A>,
    argv?: string[],
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    const out = await super.parse(options, argv)
    this.configFiles = await loadCliFiles(out.flags as {config?: string})
    return out
  }

  /** `daemon.socket` or `cli.controller` as this command resolves it (flag > env > file > default). */
  protected setting(key: 'cli.controller' | 'daemon.socket', flags: Record<string, unknown>): Resolved {
    return cliSetting(key, flags, this.configFiles)
  }

  /** The client for the socket named by --socket, MESH_SOCKET, a config file or the default. */
  protected connect(flags: {socket?: string | undefined}): DaemonClient {
    return new DaemonClient({socketPath: this.setting('daemon.socket', flags).value as string})
  }
}
