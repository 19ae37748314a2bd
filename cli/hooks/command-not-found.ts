/**
 * A mistyped command. On a terminal, @oclif/plugin-not-found does its job: "Did you mean …?"
 * and runs the suggestion when the user says yes. Without a terminal (scripts, CI) nothing may
 * prompt, and the plugin would then only say the command does not exist: here the closest
 * command is named instead, and the exit code is 127 (the shell's "command not found") both
 * ways, with the stable code COMMAND_NOT_FOUND.
 */
import {Errors, toConfiguredId, type Hook} from '@oclif/core'
import notFound from '@oclif/plugin-not-found'
import {closest} from 'fastest-levenshtein'
import {ERRORS, EXIT} from '../../shared/errors.js'
import {terminalText} from '../../shared/text.js'

const hook: Hook<'command_not_found'> = async function (opts) {
  if (process.stdin.isTTY && process.stdout.isTTY && process.env.CI !== 'true') {
    await notFound.call(this, opts)
    return
  }
  const visible = opts.config.commands.filter((c) => !c.hidden)
  const ids = [...visible.map((c) => c.id), ...visible.flatMap((c) => c.aliases)]
  const typed = terminalText(toConfiguredId(opts.id, opts.config), {max: 100})
  const suggestion = ids.length > 0 ? toConfiguredId(closest(opts.id, ids), opts.config) : undefined
  Errors.error(`${typed} is not a ${opts.config.bin} command (COMMAND_NOT_FOUND)`, {
    exit: EXIT.COMMAND_NOT_FOUND,
    suggestions: [
      ...(suggestion ? [`did you mean \`${opts.config.bin} ${suggestion}\`?`] : []),
      ERRORS.COMMAND_NOT_FOUND.hint,
    ],
  })
}

export default hook
