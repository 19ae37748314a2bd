/**
 * The few questions the admin commands may ask, only ever on a terminal: callers check
 * MeshCommand.interactive first and otherwise demand the flag (TTY_REQUIRED).
 */
import readline from 'node:readline/promises'
import {MeshError} from '../../shared/errors.js'

/** Longest secret accepted on stdin; the login schema allows 1024 characters. */
const MAX_STDIN_BYTES = 4096

/**
 * Reads a secret piped on stdin (`--password-stdin`): everything up to EOF, without one trailing
 * newline, like `docker login --password-stdin`. Bounded in size so a wrong pipe cannot eat memory.
 */
export async function readSecretFromStdin(stream: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    size += buf.length
    if (size > MAX_STDIN_BYTES) {
      throw new MeshError('INVALID_ARGUMENT', {message: 'the password on stdin is longer than 4096 bytes'})
    }
    chunks.push(buf)
  }
  const text = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '')
  if (text === '') {
    throw new MeshError('INVALID_ARGUMENT', {
      message: 'no password on stdin',
      hint: 'pipe it in: `printf %s "$PASSWORD" | mesh login --password-stdin ...`',
    })
  }
  return text
}

/** Fails with TTY_REQUIRED unless prompting is allowed; `flag` names what to pass instead. */
export function requireTty(interactive: boolean, flag: string): void {
  if (!interactive) {
    throw new MeshError('TTY_REQUIRED', {
      message: `this needs an answer but stdin is not a terminal`,
      hint: `pass ${flag}`,
    })
  }
}

export async function askText(question: string): Promise<string> {
  const rl = readline.createInterface({input: process.stdin, output: process.stderr})
  try {
    return (await rl.question(question)).trim()
  } finally {
    rl.close()
  }
}

export async function askPassword(message: string): Promise<string> {
  const {default: password} = await import('@inquirer/password')
  return password({message, mask: true}, {output: process.stderr})
}

/**
 * Asks before something destructive; anything but yes cancels. Callers skip it for --yes and
 * call requireTty(interactive, '--yes') first, so scripts never hang on a question.
 */
export async function confirmOrAbort(question: string): Promise<void> {
  const answer = (await askText(`${question} [y/N] `)).toLowerCase()
  if (answer !== 'y' && answer !== 'yes') {
    throw new MeshError('INVALID_ARGUMENT', {
      message: 'cancelled; nothing was changed',
      hint: 'pass --yes to skip the question',
    })
  }
}
