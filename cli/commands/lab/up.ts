// `mesh lab up`: a controller and N nodes, each in its own network namespace, joined to one network.
import {Flags} from '@oclif/core'
import {MeshError} from '../../../shared/errors.js'
import {labPrerequisiteProblem, natPrerequisiteProblem, requireRoot} from '../../lib/lab/lab.js'
import {NAT_KINDS, parseNatKinds} from '../../lib/lab/nat.js'
import {DEFAULT_CIDR, DEFAULT_NETWORK, DEFAULT_NODES, upLab, type LabSummary} from '../../lib/lab/up.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {renderTable} from '../../lib/render/table.js'

export default class LabUp extends MeshCommand {
  static override summary = 'Build a whole mesh on this machine in network namespaces (root)'
  static override description =
    'Starts a controller and N nodes (each with its own meshd) in network namespaces on a private bridge, ' +
    'creates a network, joins every node with an invite and waits until every pair pings. ' +
    'Nothing is added to the host network. Remove it with `mesh lab down`. ' +
    'With --nat each node sits on a private LAN behind its own NAT router namespace of the given kind ' +
    `(${NAT_KINDS.join(', ')}); then only pairs of \`none\` nodes are waited on to ping.`
  static override examples = [
    '<%= config.bin %> lab up',
    '<%= config.bin %> lab up --nodes 5 --json',
    '<%= config.bin %> lab up --nat none,cone,restricted,symmetric,udp-blocked',
  ]
  static override enableJsonFlag = true
  static override flags = {
    nodes: Flags.integer({
      description: `number of nodes (default: one per --nat kind, else ${DEFAULT_NODES})`,
      min: 1,
      max: 50,
    }),
    nat: Flags.string({
      description: `one NAT kind per node, comma-separated: ${NAT_KINDS.join(', ')}`,
    }),
    network: Flags.string({description: 'name of the network to create', default: DEFAULT_NETWORK}),
    cidr: Flags.string({description: 'CIDR of the network', default: DEFAULT_CIDR}),
    'keep-on-failure': Flags.boolean({description: 'leave a lab that failed to come up for inspection'}),
  }

  async run(): Promise<LabSummary> {
    const {flags} = await this.parse(LabUp)
    requireRoot()
    const nat = flags.nat === undefined ? undefined : parseNatKinds(flags.nat)
    if (nat && flags.nodes !== undefined && flags.nodes !== nat.length)
      throw new MeshError('INVALID_ARGUMENT', {
        message: `--nat names ${nat.length} kind(s) but --nodes is ${flags.nodes}`,
        hint: 'give one NAT kind per node, or leave --nodes out',
      })
    const problem = labPrerequisiteProblem() ?? (nat ? natPrerequisiteProblem() : undefined)
    if (problem)
      throw new MeshError('WIREGUARD_UNAVAILABLE', {message: `the lab cannot run here: ${problem}`})
    const {lab, summary} = await upLab({
      nodes: flags.nodes ?? nat?.length ?? DEFAULT_NODES,
      ...(nat ? {nat} : {}),
      network: flags.network,
      cidr: flags.cidr,
      keepOnFailure: flags['keep-on-failure'],
      progress: (line) => {
        if (!this.jsonEnabled()) this.logToStderr(line)
      },
    })
    lab.close()
    this.log(
      renderTable(summary.nodes, [
        {header: 'NODE', get: (n) => n.name},
        {header: 'NAMESPACE', get: (n) => n.namespace},
        ...(nat ? [{header: 'NAT', get: (n: LabSummary['nodes'][number]) => n.nat ?? ''}] : []),
        {header: 'UNDERLAY', get: (n) => n.underlay},
        ...(nat ? [{header: 'PUBLIC', get: (n: LabSummary['nodes'][number]) => n.publicAddress}] : []),
        {header: `ADDRESS (${summary.network.name})`, get: (n) => n.address},
      ]),
    )
    const first = summary.nodes[0]!
    const other = summary.nodes[1] ?? first
    this.log(
      [
        '',
        `Lab ${summary.prefix} is up in ${(summary.timings.totalMs / 1000).toFixed(1)} s; ` +
          (nat
            ? `every node reached the controller; pairs of none nodes ping (${summary.pinged.join(', ') || 'none'}).`
            : 'every pair pings.'),
        `Controller ${summary.controller.url} (namespace ${summary.controller.namespace}), ` +
          `admin password in ${summary.runDir}/lab.json`,
        '',
        `  mesh lab exec ${first.name} -- mesh status`,
        `  mesh lab exec ${first.name} -- ping -c1 ${other.address}`,
        ...(summary.adminCli
          ? [`  mesh lab exec ${first.name} -- mesh node list -n ${summary.network.name}`]
          : []),
        `  mesh lab status`,
        `  mesh lab down`,
      ].join('\n'),
    )
    return summary
  }
}
