// `mesh policy check FILE`: validate a policy and run its tests here, without a controller (CI).
import {Args} from '@oclif/core'
import {MeshCommand} from '../../lib/mesh-command.js'
import {checkPolicyLocally, readPolicyFile, withPolicyProblems} from '../../lib/policy-file.js'

export default class PolicyCheck extends MeshCommand {
  static override summary = 'Check a policy file and run its tests, offline'
  static override description =
    'Parses the file, checks every name it uses and runs its embedded tests with the same code the controller runs, without contacting it: for a pre-commit hook or CI. Exit 0 when it would be accepted, 65 when not (every problem is listed with its line and rule).'
  static override examples = [
    '<%= config.bin %> policy check policy.hujson',
    '<%= config.bin %> policy check - < policy.hujson --json',
  ]
  static override enableJsonFlag = true
  static override args = {file: Args.string({description: 'the policy file, or - for stdin', required: true})}

  async run(): Promise<{ok: true; rules: number; tests: number}> {
    const {args} = await this.parse(PolicyCheck)
    const document = await readPolicyFile(args.file)
    const res = await withPolicyProblems(this, async () => checkPolicyLocally(document))
    this.log(`ok: ${res.rules} rules; ${res.tests} tests pass`)
    return res
  }
}
