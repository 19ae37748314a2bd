// `mesh up [NETWORK]`: bring joined networks up; with --auth-key, join unattended first (servers, CI).
import {Args, Flags} from '@oclif/core'
import {MeshError} from '../../shared/errors.js'
import type {JoinResult, UpResult} from '../../shared/protocol/local-api.js'
import {settingFlag} from '../lib/config/index.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {waitFlags} from '../lib/flags.js'
import {joinWithSteps} from '../lib/steps/join.js'

export type UpCommandResult = UpResult & {joined?: JoinResult}

export default class Up extends DaemonCommand {
  static override summary = 'Bring networks up; with --auth-key, join a network unattended'
  static override description =
    'With --auth-key, a node that already belongs to a network of that controller is only brought up, so the same command can run at every boot.'
  static override examples = [
    '<%= config.bin %> up',
    '<%= config.bin %> up home-lab',
    'MESH_AUTH_KEY=meshkey_... <%= config.bin %> up --controller https://mesh.example.net --name ci-runner-7',
  ]
  static override enableJsonFlag = true
  static override args = {
    network: Args.string({description: 'network name or id; all networks when omitted'}),
  }
  static override flags = {
    'auth-key': Flags.string({description: 'auth key from `mesh authkey create`', env: 'MESH_AUTH_KEY'}),
    controller: settingFlag.string('cli.controller'),
    name: Flags.string({description: "this node's name (with --auth-key) [default: the hostname]"}),
    interface: Flags.string({description: 'WireGuard interface name (with --auth-key)'}),
    ...waitFlags,
  }

  async run(): Promise<UpCommandResult> {
    const {args, flags} = await this.parse(Up)
    const daemon = this.connect(flags)
    if (flags['auth-key'] !== undefined) {
      const configured = this.setting('cli.controller', flags).value as string | undefined
      if (configured === undefined)
        throw new MeshError('INVALID_ARGUMENT', {
          message:
            '--auth-key needs --controller URL (or MESH_CONTROLLER, or cli.controller in a config file)',
        })
      const controller = configured.replace(/\/+$/, '')
      const st = await daemon.status()
      if (!st.networks.some((n) => n.controller === controller)) {
        const {joined} = await joinWithSteps(
          daemon,
          {
            controller,
            authKey: flags['auth-key'],
            ...(flags.name !== undefined && {name: flags.name}),
            ...(flags.interface !== undefined && {interface: flags.interface}),
          },
          {
            json: this.jsonEnabled(),
            wait: flags.wait ?? (Boolean(process.stdin.isTTY) && Boolean(process.stderr.isTTY)),
            timeoutMs: flags.timeout * 1000,
          },
        )
        this.log(`joined ${joined.name} as ${joined.nodeName} ${joined.address} on ${joined.interface}`)
        return {changed: [joined.name], joined}
      }
    }
    const res = await daemon.up({...(args.network !== undefined && {network: args.network})})
    if (res.changed.length === 0) {
      const st = await daemon.status()
      if (st.networks.length === 0)
        throw new MeshError('NETWORK_NOT_JOINED', {message: 'this node has joined no network'})
      this.logToStderr('mesh is already up.')
    }
    for (const n of res.changed) this.log(`${n}: up`)
    return res
  }
}
