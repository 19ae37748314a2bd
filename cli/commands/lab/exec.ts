// `mesh lab exec NODE -- CMD...`: run a command inside a lab node's namespace, talking to its meshd.
import {spawn} from 'node:child_process'
import {Args, Flags} from '@oclif/core'
import {MeshError} from '../../../shared/errors.js'
import {Lab, requireRoot} from '../../lib/lab/lab.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class LabExec extends MeshCommand {
  static override summary = "Run a command in a lab node's namespace with MESH_SOCKET set (root)"
  static override description =
    'NODE is node1, node2, ... or `controller`. `mesh` inside resolves to this build; the exit code of CMD ' +
    'is passed through.'
  static override examples = [
    '<%= config.bin %> lab exec node1 -- mesh status',
    '<%= config.bin %> lab exec node2 -- ping -c1 10.240.0.1',
    '<%= config.bin %> lab exec controller -- ss -tlnp',
  ]
  static override strict = false
  static override args = {node: Args.string({description: 'node1, node2, ... or controller', required: true})}
  static override flags = {
    lab: Flags.string({
      description: 'prefix of the lab (default: MESH_LAB, else the newest)',
      env: 'MESH_LAB',
    }),
  }

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(LabExec)
    requireRoot()
    const lab = Lab.current(flags.lab)
    if (!lab)
      throw new MeshError('NOT_FOUND', {message: 'no lab is running', hint: 'start one with `mesh lab up`'})
    // argv holds NODE and then the command (oclif drops the `--`).
    const cmd = (argv as string[]).slice(1)
    if (cmd.length === 0) throw new MeshError('INVALID_ARGUMENT', {message: 'give a command after --'})
    let ns: string
    let env: NodeJS.ProcessEnv
    if (args.node === 'controller') {
      if (!lab.state.controller) throw new MeshError('NOT_FOUND', {message: 'the lab has no controller'})
      ns = lab.state.controller.ns
      env = lab.env()
    } else {
      const node = lab.node(args.node)
      ns = node.ns
      env = lab.env(node)
    }
    const code = await new Promise<number>((resolve) => {
      const child = spawn('ip', ['netns', 'exec', ns, ...cmd], {stdio: 'inherit', env})
      child.on('error', () => resolve(127))
      child.on('exit', (c, sig) => resolve(c ?? 128 + (sig === 'SIGINT' ? 2 : sig === 'SIGKILL' ? 9 : 15)))
    })
    this.exit(code)
  }
}
