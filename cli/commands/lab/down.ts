// `mesh lab down`: remove a lab (the newest, a named one, or all) and everything it made.
import {Flags} from '@oclif/core'
import {MeshError} from '../../../shared/errors.js'
import {Lab, requireRoot} from '../../lib/lab/lab.js'
import {listLabs} from '../../lib/lab/state.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export interface LabDownResult {
  removed: Array<{prefix: string; namespaces: number; processes: number; logs?: string}>
}

export default class LabDown extends MeshCommand {
  static override summary = 'Remove a lab: its processes, namespaces and files (root)'
  static override examples = [
    '<%= config.bin %> lab down',
    '<%= config.bin %> lab down --lab ml3f2a',
    '<%= config.bin %> lab down --all',
  ]
  static override enableJsonFlag = true
  static override flags = {
    lab: Flags.string({
      description: 'prefix of the lab (default: MESH_LAB, else the newest)',
      env: 'MESH_LAB',
    }),
    all: Flags.boolean({description: 'remove every lab', default: false}),
    'keep-logs': Flags.boolean({
      description: 'copy the logs to a new private directory under /tmp first (its path is printed)',
    }),
  }

  async run(): Promise<LabDownResult> {
    const {flags} = await this.parse(LabDown)
    requireRoot()
    const prefixes = flags.all ? listLabs() : [flags.lab ?? listLabs().at(-1)].filter((p) => p !== undefined)
    if (flags.lab && !Lab.open(flags.lab)) throw new MeshError('NOT_FOUND', {message: `no lab ${flags.lab}`})
    if (prefixes.length === 0) {
      this.logToStderr('No lab is running.')
      return {removed: []}
    }
    const removed: LabDownResult['removed'] = []
    for (const prefix of prefixes) {
      const lab = Lab.open(prefix)
      if (!lab) continue
      const {logs} = lab.teardownSync({keepLogs: flags['keep-logs']})
      removed.push({
        prefix,
        namespaces: lab.state.namespaces.length,
        processes: lab.state.procs.length,
        ...(logs ? {logs} : {}),
      })
      this.log(`lab ${prefix}: removed${logs ? ` (logs in ${logs})` : ''}`)
    }
    return {removed}
  }
}
