// `mesh lab status`: the labs on this machine, their processes and nodes.
import {Flags} from '@oclif/core'
import {Lab, requireRoot} from '../../lib/lab/lab.js'
import {publicAddress, type NatKind} from '../../lib/lab/nat.js'
import {isAlive} from '../../lib/lab/procs.js'
import {listLabs} from '../../lib/lab/state.js'
import {namespaceExists} from '../../lib/lab/topology.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {renderTable} from '../../lib/render/table.js'

export interface LabStatus {
  labs: Array<{
    prefix: string
    createdAt: string
    runDir: string
    controller: {url: string; namespace: string; running: boolean} | null
    nodes: Array<{
      name: string
      namespace: string
      underlay: string
      publicAddress: string
      /** NAT labs: the node's NAT kind and its router's namespace. */
      nat?: NatKind
      routerNamespace?: string
      addresses: Record<string, string>
      meshd: boolean
      namespaceExists: boolean
    }>
    processes: Array<{name: string; pid: number; running: boolean; log: string}>
  }>
}

export default class LabStatusCommand extends MeshCommand {
  static override summary = 'Show the labs on this machine (root)'
  static override examples = ['<%= config.bin %> lab status', '<%= config.bin %> lab status --json']
  static override enableJsonFlag = true
  static override flags = {
    lab: Flags.string({description: 'only this lab', env: 'MESH_LAB'}),
  }

  async run(): Promise<LabStatus> {
    const {flags} = await this.parse(LabStatusCommand)
    requireRoot()
    const prefixes = flags.lab ? [flags.lab] : listLabs()
    const labs: LabStatus['labs'] = []
    for (const prefix of prefixes) {
      const lab = Lab.open(prefix)
      if (!lab) continue
      const s = lab.state
      const running = (name: string): boolean => {
        const p = lab.proc(name)
        return p !== undefined && isAlive(p)
      }
      labs.push({
        prefix,
        createdAt: s.createdAt,
        runDir: s.runDir,
        controller: s.controller
          ? {url: s.controller.url, namespace: s.controller.ns, running: running('controller')}
          : null,
        nodes: s.nodes.map((n) => ({
          name: n.name,
          namespace: n.ns,
          underlay: n.underlay,
          publicAddress: publicAddress(n),
          ...(n.nat ? {nat: n.nat} : {}),
          ...(n.router ? {routerNamespace: n.router.ns} : {}),
          addresses: n.addresses,
          meshd: running(`${n.name}/meshd`),
          namespaceExists: namespaceExists(n.ns),
        })),
        processes: s.procs.map((p) => ({name: p.name, pid: p.pid, running: isAlive(p), log: p.log})),
      })
    }
    if (labs.length === 0) this.log('No lab is running. Start one with `mesh lab up`.')
    for (const l of labs) {
      const ctl = l.controller
        ? `${l.controller.url} (${l.controller.running ? 'running' : 'stopped'})`
        : 'none'
      this.log(`lab ${l.prefix}  created ${l.createdAt}  controller ${ctl}`)
      this.log(
        renderTable(
          l.nodes,
          [
            {header: 'NODE', get: (n) => n.name},
            {header: 'NAMESPACE', get: (n) => n.namespace},
            {header: 'NAT', get: (n) => n.nat ?? '-'},
            {header: 'UNDERLAY', get: (n) => n.underlay},
            {header: 'PUBLIC', get: (n) => n.publicAddress},
            {
              header: 'ADDRESSES',
              get: (n) =>
                Object.entries(n.addresses)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(' '),
            },
            {header: 'MESHD', get: (n) => (n.meshd ? 'running' : 'stopped')},
          ],
          {empty: '(no nodes)'},
        ),
      )
    }
    return {labs}
  }
}
