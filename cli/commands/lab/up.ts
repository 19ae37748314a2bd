// `mesh lab up`: a controller and N nodes, each in its own network namespace, joined to one network.
import {Flags} from '@oclif/core'
import {MeshError} from '../../../shared/errors.js'
import {labPrerequisiteProblem, requireRoot} from '../../lib/lab/lab.js'
import {DEFAULT_CIDR, DEFAULT_NETWORK, upLab, type LabSummary} from '../../lib/lab/up.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {renderTable} from '../../lib/render/table.js'

export default class LabUp extends MeshCommand {
  static override summary = 'Build a whole mesh on this machine in network namespaces (root)'
  static override description =
    'Starts a controller and N nodes (each with its own meshd) in network namespaces on a private bridge, ' +
    'creates a network, joins every node with an invite and waits until every pair pings. ' +
    'Nothing is added to the host network. Remove it with `mesh lab down`.'
  static override examples = ['<%= config.bin %> lab up', '<%= config.bin %> lab up --nodes 5 --json']
  static override enableJsonFlag = true
  static override flags = {
    nodes: Flags.integer({description: 'number of nodes', default: 3, min: 1, max: 50}),
    network: Flags.string({description: 'name of the network to create', default: DEFAULT_NETWORK}),
    cidr: Flags.string({description: 'CIDR of the network', default: DEFAULT_CIDR}),
    'keep-on-failure': Flags.boolean({description: 'leave a lab that failed to come up for inspection'}),
  }

  async run(): Promise<LabSummary> {
    const {flags} = await this.parse(LabUp)
    requireRoot()
    const problem = labPrerequisiteProblem()
    if (problem)
      throw new MeshError('WIREGUARD_UNAVAILABLE', {message: `the lab cannot run here: ${problem}`})
    const {lab, summary} = await upLab({
      nodes: flags.nodes,
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
        {header: 'UNDERLAY', get: (n) => n.underlay},
        {header: `ADDRESS (${summary.network.name})`, get: (n) => n.address},
      ]),
    )
    const first = summary.nodes[0]!
    const other = summary.nodes[1] ?? first
    this.log(
      [
        '',
        `Lab ${summary.prefix} is up in ${(summary.timings.totalMs / 1000).toFixed(1)} s; every pair pings.`,
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
