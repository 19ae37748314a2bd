// `mesh policy test [FILE]`: the controller validates a policy and runs its tests, storing nothing.
import {Args} from '@oclif/core'
import {MeshError} from '../../../shared/errors.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {readPolicyFile, withPolicyProblems} from '../../lib/policy-file.js'
import {openSession} from '../../lib/session.js'

export default class PolicyTest extends MeshCommand {
  static override summary = "Run a policy's tests on the controller (the stored one by default)"
  static override description =
    "Sends FILE (or, without it, the tenant's stored policy) to the controller, which validates it and runs its embedded tests without storing anything: what `mesh policy set` would say. Exit 0 when all pass, 65 when not."
  static override examples = [
    '<%= config.bin %> policy test',
    '<%= config.bin %> policy test new-policy.hujson --json',
  ]
  static override enableJsonFlag = true
  static override args = {
    file: Args.string({description: 'a policy file, or - for stdin (default: the stored policy)'}),
  }

  async run(): Promise<{ok: true; rules: number; tests: number}> {
    const {args} = await this.parse(PolicyTest)
    const {api} = await openSession()
    const document =
      args.file === undefined ? (await api.getPolicy()).document : await readPolicyFile(args.file)
    if (document === null)
      throw new MeshError('NOT_FOUND', {
        message: 'the tenant has no policy to test',
        hint: 'give a file: mesh policy test FILE',
      })
    const res = await withPolicyProblems(this, () => api.checkPolicy(document))
    this.log(`ok: ${res.rules} rules; ${res.tests} tests pass`)
    return res
  }
}
