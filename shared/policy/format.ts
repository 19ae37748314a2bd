/** One-line renderings of policy errors, as `mesh policy check` and the API's error detail show them. */
import type {PolicyError} from './types.js'

/** "line 3, column 12, acls[0].dst[1]: unknown group "group:foo"" (no path for the document as a whole). */
export const formatPolicyError = (e: PolicyError): string =>
  `line ${e.line}, column ${e.column}${e.path ? `, ${e.path}` : ''}: ${e.message}`
