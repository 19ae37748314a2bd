// `mesh topology [NETWORK]`: a live picture of a network for admins (nodes, direct and relayed
// paths), from the controller's REST API and admin event stream; --json prints the graph once.
import {Args, Flags} from '@oclif/core'
import {MeshError} from '../../shared/errors.js'
import {followAdminEvents} from '../lib/controller-events.js'
import {MeshCommand} from '../lib/mesh-command.js'
import {openSession} from '../lib/session.js'
import {buildTopology, summarise, type Topology} from '../lib/topology/model.js'

export default class TopologyCommand extends MeshCommand {
  static override summary = 'Show a live picture of a network: nodes, direct and relayed paths'
  static override description = `One line per node: online (●) or offline (○, dimmed), its mesh address, how many peers it reaches directly (══) and through the relay (┄┄), then those peers by name, direct ones in green and relayed ones in yellow. The list pages when the network is larger than the terminal (↑/↓ scroll, PgUp/PgDn page, q quits), so 50 nodes stay readable on 80x24. It follows the controller's admin event stream as nodes join, leave, come online and change paths.

With --json, or when not on a terminal, the graph is printed once: {network, nodes, edges}.`
  static override examples = [
    '<%= config.bin %> topology',
    '<%= config.bin %> topology home-lab',
    '<%= config.bin %> topology home-lab --json',
  ]
  static override enableJsonFlag = true
  static override args = {
    network: Args.string({description: 'network name or id [default: the only network you can see]'}),
  }
  static override flags = {
    once: Flags.boolean({
      description: 'print the picture once and exit (the default when not on a terminal)',
    }),
  }

  async run(): Promise<(Topology & {network: {id: string; name: string}}) | undefined> {
    const {args, flags} = await this.parse(TopologyCommand)
    const {api} = await openSession()
    let ref = args.network
    if (ref === undefined) {
      const nets = (await api.listAll('network.list', {})).items
      if (nets.length !== 1)
        throw new MeshError('INVALID_ARGUMENT', {
          message: nets.length === 0 ? 'you can see no network' : `which network? you can see ${nets.length}`,
          hint: `name one: ${nets
            .slice(0, 5)
            .map((n) => n.name)
            .join(', ')}${nets.length > 5 ? ', …' : ''}`,
        })
      ref = nets[0]!.name
    }
    const network = await api.showNetwork({network: ref})
    const load = async (): Promise<Topology> => {
      const [nodes, connections] = await Promise.all([
        api.listAll('node.list', {params: {network: network.id}, query: {}}),
        api.listAll('connection.list', {params: {network: network.id}, query: {}}),
      ])
      return buildTopology(network.id, nodes.items, connections.items)
    }
    const live =
      !flags.once && !this.jsonEnabled() && Boolean(process.stdout.isTTY) && Boolean(process.stdin.isTTY)
    if (live) {
      const {runLiveTopology} = await import('../lib/tui/live-topology.js')
      await runLiveTopology(
        // Each (re)connect takes the current token: one refreshed after expiry, not the first one.
        {load, follow: (h) => followAdminEvents(api, h)},
        network.name,
      )
      return undefined
    }
    const t = await load()
    if (!this.jsonEnabled()) this.log(topologyText(t, network.name))
    return {network: {id: network.id, name: network.name}, ...t}
  }
}

/** The picture as plain lines (not on a terminal). */
function topologyText(t: Topology, name: string): string {
  const direct = t.edges.filter((e) => e.path === 'direct').length
  const lines = [
    `${name}: ${t.nodes.length} nodes (${t.nodes.filter((n) => n.online).length} online), ${direct} direct, ${t.edges.length - direct} relayed paths`,
  ]
  for (const s of summarise(t))
    lines.push(
      `${s.node.online ? 'online ' : 'offline'} ${s.node.name} ${s.node.address}  direct: ${s.direct.map((n) => n.name).join(' ') || '-'}  relay: ${s.relay.map((n) => n.name).join(' ') || '-'}`,
    )
  return lines.join('\n')
}
