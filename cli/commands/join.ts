// `mesh join <joinString>`: register this node with the invite's controller and bring the network up.
import {Args, Flags} from '@oclif/core'
import {MeshError} from '../../shared/errors.js'
import {decodeJoinString} from '../../shared/invite.js'
import type {JoinResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {waitFlags} from '../lib/flags.js'
import {joinWithSteps} from '../lib/steps/join.js'

export default class Join extends DaemonCommand {
  static override summary = 'Join a network with an invite from `mesh invite create`'
  static override description = `Shows its steps as they happen: registering with the controller, waiting for approval (when the network asks for it), configuring WireGuard and the first handshake with a peer. On a terminal it waits for them (at most --timeout seconds; the node keeps going on its own after that); otherwise it returns once registered, unless --wait.`
  static override examples = [
    '<%= config.bin %> join meshinv1_eyJjIjoi...',
    '<%= config.bin %> join meshinv1_eyJjIjoi... --name laptop --interface mesh7',
    '<%= config.bin %> join meshinv1_eyJjIjoi... --wait --timeout 120',
  ]
  static override enableJsonFlag = true
  static override args = {
    joinString: Args.string({description: 'the invite string (meshinv1_...)', required: true}),
  }
  static override flags = {
    name: Flags.string({description: "this node's name in the network [default: the hostname]"}),
    interface: Flags.string({description: 'WireGuard interface name [default: mesh0, mesh1, ...]'}),
    'listen-port': Flags.integer({
      description: 'WireGuard UDP port [default: a free one]',
      min: 1,
      max: 65535,
    }),
    ...waitFlags,
  }

  async run(): Promise<JoinResult> {
    const {args, flags} = await this.parse(Join)
    const invite = decodeJoinString(args.joinString)
    if (!invite) throw new MeshError('INVALID_INVITE_STRING')
    const {joined: res, steps} = await joinWithSteps(
      this.connect(flags),
      {
        controller: invite.controller,
        invite: invite.code,
        ...(flags.name !== undefined && {name: flags.name}),
        ...(flags.interface !== undefined && {interface: flags.interface}),
        ...(flags['listen-port'] !== undefined && {listenPort: flags['listen-port']}),
      },
      {
        json: this.jsonEnabled(),
        wait: flags.wait ?? (Boolean(process.stdin.isTTY) && Boolean(process.stderr.isTTY)),
        timeoutMs: flags.timeout * 1000,
      },
    )
    const approved = steps.find((s) => s.id === 'approval')?.state === 'done'
    const pending = !approved && res.nodeStatus === 'pending' ? ' (waiting for approval by an admin)' : ''
    this.log(`joined ${res.name} as ${res.nodeName} ${res.address} on ${res.interface}${pending}`)
    this.log(`${res.peers.length} peer(s); see them with \`mesh status\``)
    return res
  }
}
