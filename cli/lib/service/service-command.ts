/**
 * Base class of `mesh daemon|controller install|uninstall`: their shared flags, and printing the
 * unit where there is no service manager to install it into.
 */
import {Flags} from '@oclif/core'
import {isMeshError} from '../../../shared/errors.js'
import {MeshCommand} from '../mesh-command.js'
import type {PrintedUnit} from './install.js'

export abstract class ServiceCommand extends MeshCommand {
  static installFlags = {
    print: Flags.boolean({
      description:
        'print the unit (or plist) to stdout and change nothing; works on any host, no root needed',
      default: false,
      exclusive: ['dry-run', 'no-start'],
    }),
    'dry-run': Flags.boolean({
      description: 'show the files and commands install would write and run, and change nothing',
      default: false,
    }),
    'no-start': Flags.boolean({
      description: 'enable the service at boot but do not start (or restart) it now',
      default: false,
    }),
  }

  static uninstallFlags = {
    'dry-run': Flags.boolean({
      description: 'show what uninstall would remove and run, and change nothing',
      default: false,
    }),
  }

  /** --print: the unit text alone on stdout, ready for `> file`. */
  protected printed(p: PrintedUnit): PrintedUnit {
    if (!this.jsonEnabled()) process.stdout.write(p.unit)
    return p
  }

  /**
   * Runs an install; where it fails for want of a service manager, the unit it would have
   * written goes to stdout first (the error, with its hint, follows on stderr).
   */
  protected async orPrintUnit<T>(install: () => Promise<T>): Promise<T> {
    try {
      return await install()
    } catch (err) {
      const unit = isMeshError(err) ? (err.detail as {unit?: unknown} | undefined)?.unit : undefined
      if (typeof unit === 'string' && !this.jsonEnabled()) process.stdout.write(unit)
      throw err
    }
  }

  /** Human output: one line per step; warnings on stderr. */
  protected report(lines: readonly string[], warnings: readonly string[]): void {
    if (this.jsonEnabled()) return
    for (const line of lines) this.log(line)
    for (const w of warnings) this.warn(w)
  }
}
