/**
 * Base class of every mesh command: the shared global flags, and the one place that turns
 * errors into what a person (or a script, with --json) sees and the documented exit code.
 */
import {format} from 'node:util'
import {Command, Flags, ux} from '@oclif/core'
import {ERRORS, EXIT, MeshError, isMeshError} from '../../shared/errors.js'
import {jsonForTerminal, terminalText} from '../../shared/text.js'

/** Longest message or hint printed for an error; the rest of a hostile 1 MiB message is cut. */
const MAX_ERROR_TEXT = 1000
const oneLine = (text: unknown): string => terminalText(text, {max: MAX_ERROR_TEXT})

export abstract class MeshCommand extends Command {
  static override baseFlags = {
    verbose: Flags.boolean({
      description: 'print stack traces of unexpected errors',
      default: false,
      helpGroup: 'GLOBAL',
    }),
  }

  /*
   * Everything a command prints goes through shared/text.ts: what it prints mixes its own words
   * with names, ids, addresses and warnings from a controller or meshd, and none of those may
   * drive the terminal (escape sequences) or disguise itself (bidi, zero-width). Human output is
   * sanitized (line feeds kept; the only escape sequences left are the bold on/off of our own
   * table headers, whose cells were sanitized one by one); --json output stays the exact JSON
   * value, with the characters a terminal would act on written as \uXXXX escapes.
   */
  override log(message: unknown = '', ...args: unknown[]): void {
    super.log(terminalText(format(message, ...args), {multiline: true, allowBold: true}))
  }

  override logToStderr(message: unknown = '', ...args: unknown[]): void {
    super.logToStderr(terminalText(format(message, ...args), {multiline: true}))
  }

  override warn(input: string | Error): string | Error {
    super.warn(oneLine(input instanceof Error ? input.message : input))
    return input
  }

  override logJson(json: unknown): void {
    const text = jsonForTerminal(JSON.stringify(json, null, 2))
    ux.stdout(ux.colorizeJson(text, {pretty: false, theme: this.config.theme?.json}))
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
    if (verbose && !isMeshError(err) && err.stack)
      process.stderr.write(`${terminalText(err.stack, {multiline: true})}\n`)
    // Message and hint may be a controller's or meshd's words, relayed as they came.
    this.error(oneLine(meshErr.message), {
      code: oneLine(meshErr.code),
      exit,
      suggestions: [oneLine(meshErr.hint)],
    })
  }
}
