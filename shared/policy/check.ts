/**
 * Whether a policy document may be stored: it parses, names nothing unknown and passes its own
 * embedded tests. One function for the controller (controller/domain/policies.ts, the check
 * endpoint) and `mesh policy check` (offline), so both say the same thing the same way.
 */
import {MeshError} from '../errors.js'
import {parsePolicy, runPolicyTests, type Policy} from './index.js'

/** The most errors or failed tests one refusal lists (the first one is in the message). */
const MAX_LISTED = 50

/**
 * The document parsed and its tests run, or POLICY_INVALID / POLICY_TESTS_FAILED with the line,
 * the rule and what is wrong (every problem in `detail`, the first in the message). Pure: the
 * check endpoint and `mesh policy check` share it. `users`: the tenant's user names, when known.
 */
export function checkPolicy(document: string, opts: {users?: Iterable<string> | undefined} = {}): Policy {
  // With the tenant's user names, a name that is neither a user nor a host is an error (a typo
  // would otherwise stand for nobody); offline, any valid user name is taken as a user.
  const parsed = parsePolicy(document, opts.users === undefined ? {} : {users: opts.users})
  if (!parsed.ok) {
    const [first] = parsed.errors
    throw new MeshError('POLICY_INVALID', {
      message: first
        ? `line ${first.line}, column ${first.column}: ${first.path ? `${first.path}: ` : ''}${first.message}`
        : 'the policy does not parse',
      detail: {errors: parsed.errors.slice(0, MAX_LISTED)},
    })
  }
  const failures = runPolicyTests(parsed.policy)
  if (failures.length > 0) {
    const [first] = failures
    throw new MeshError('POLICY_TESTS_FAILED', {
      message: `${failures.length} of the policy's tests fail; first: ${first?.message ?? ''}`,
      detail: {failures: failures.slice(0, MAX_LISTED)},
    })
  }
  return parsed.policy
}
