// `mesh policy set FILE`: replace the tenant's ACL policy (the controller validates it and runs
// its tests first; nothing is stored when either fails).
import {Args, Flags} from '@oclif/core'
import type {PolicyInfo} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {readPolicyFile, withPolicyProblems} from '../../lib/policy-file.js'
import {openSession} from '../../lib/session.js'

export default class PolicySet extends MeshCommand {
  static override summary = "Replace the tenant's ACL policy"
  static override description =
    'The controller refuses a policy that does not parse, names an unknown group or host, or fails one of its own tests, with the line, the rule and what is wrong; nothing changes then. A stored change reaches every affected node within a second and is audited with a diff. --if-version refuses the change when someone else changed the policy since the version you edited.'
  static override examples = [
    '<%= config.bin %> policy set policy.hujson',
    '<%= config.bin %> policy get > p.hujson && $EDITOR p.hujson && <%= config.bin %> policy set p.hujson --if-version 3',
    'cat policy.hujson | <%= config.bin %> policy set -',
  ]
  static override enableJsonFlag = true
  static override args = {file: Args.string({description: 'the policy file, or - for stdin', required: true})}
  static override flags = {
    'if-version': Flags.integer({
      description: 'only if the stored policy is at this version (0: there is none yet)',
      min: 0,
    }),
  }

  async run(): Promise<PolicyInfo> {
    const {args, flags} = await this.parse(PolicySet)
    const document = await readPolicyFile(args.file)
    const {api} = await openSession()
    const info = await withPolicyProblems(this, () =>
      api.setPolicy({
        document,
        ...(flags['if-version'] !== undefined ? {ifVersion: flags['if-version']} : {}),
      }),
    )
    this.log(`policy version ${info.version} stored`)
    return info
  }
}
