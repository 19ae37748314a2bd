/**
 * ACL policy as code (issue 10), the pure part: parsing and validating the policy document,
 * evaluating it, running its embedded tests, and compiling it against a network's nodes into
 * visibility classes for the netmap hub. No I/O: the controller stores the text, the netmap hub
 * and meshd's firewall consume what compilePolicy answers.
 *
 * The document (JSON with comments and trailing commas):
 *   {
 *     "groups": {"group:eng": ["alice", "bob", "oidc:Engineering"], "group:ops": ["carol", "group:eng"]},
 *     "hosts": {"db-subnet": "10.20.0.0/24", "printer": "10.20.0.9"},
 *     "acls": [
 *       {"src": ["group:eng", "tag:ci"], "dst": ["tag:db:5432", "tag:web:80,443"], "proto": "tcp"},
 *       {"src": ["alice"], "dst": ["*:*"]},        // no proto: every protocol, ports must be *
 *     ],
 *     "tests": [{"src": "alice", "accept": ["tag:db:5432"], "deny": ["tag:db:22"]}],
 *   }
 * `oidc:NAME` in a group: users whose OpenID provider put them in group NAME at their last login
 * (PolicyNode.ownerGroups); the controller tells the netmap hub when a login changes them.
 * A policy exists → default deny: a rule lets nodes matching src open connections to nodes
 * matching dst on those ports; replies always flow back.
 */
export type {
  DstEntry,
  Policy,
  PolicyError,
  PolicyNode,
  PolicyProto,
  PolicyRule,
  PolicyTest,
  PortRange,
  Selector,
} from './types.js'
export {IDP_GROUP_PREFIX, parsePolicy, POLICY_LIMITS} from './parse.js'
export type {ParsePolicyOptions, ParsePolicyResult} from './parse.js'
export {allowingRule, canReach, inIdpGroup, selectorMatches} from './eval.js'
export {runPolicyTests, TEST_WORK_LIMIT} from './policy-tests.js'
export type {PolicyTestFailure} from './policy-tests.js'
export {compilePolicy, NO_POLICY_CLASS} from './compile.js'
export type {CompiledPolicy} from './compile.js'
export {policyDiff, DIFF_LIMITS} from './diff.js'
export {formatPolicyError} from './format.js'
