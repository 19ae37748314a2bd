/**
 * Base class of every mesh command: the shared global flags, and the one place that turns
 * errors into what a person (or a script, with --json) sees and the documented exit code.
 */
import {Command, Flags} from '@oclif/core'
import {ERRORS, EXIT, MeshError, isMeshError} from '../../shared/errors.js'

export abstract class MeshCommand extends Command {
  static override baseFlags = {
    verbose: Flags.boolean({
      description: 'print stack traces of unexpected errors',
      default: false,
      helpGroup: 'GLOBAL',
    }),
  }

  /** True when stdin is a terminal: only then may a command prompt. */
  protected get interactive(): boolean {
    return Boolean(process.stdin.isTTY) && process.env.CI !== 'true'
  }

  /**
   * Renders every failure: a MeshError prints its message and hint and exits with its code;
   * oclif's own parse errors keep their exit code 2; anything else is a bug (exit 1, stack
   * under --verbose). With --json the error goes to stdout as {error: {code, message, hint}}.
   */
  protected override async catch(
    err: Error & {exitCode?: number; oclif?: {exit?: number}},
  ): Promise<unknown> {
    const verbose = this.argv.includes('--verbose')
    if (err.oclif?.exit !== undefined && !isMeshError(err)) {
      // oclif parse/usage errors, or this.exit(): keep oclif's behaviour and exit code.
      if (this.jsonEnabled()) {
        process.exitCode = err.oclif.exit
        this.logJson({
          error: {code: 'INVALID_ARGUMENT', message: err.message, hint: ERRORS.INVALID_ARGUMENT.hint},
        })
        return
      }
      throw err
    }
    const meshErr = isMeshError(err)
      ? err
      : new MeshError('INTERNAL', {
          message: `unexpected error: ${err.message}`,
          hint: 'rerun with --verbose and report the output',
        })
    const exit = isMeshError(err) ? meshErr.exit : EXIT.FAILURE
    process.exitCode = exit
    if (this.jsonEnabled()) {
      this.logJson(meshErr.toWire())
      return
    }
    if (verbose && !isMeshError(err) && err.stack) process.stderr.write(`${err.stack}\n`)
    this.error(meshErr.message, {code: meshErr.code, exit, suggestions: [meshErr.hint]})
  }
}
