/**
 * How mesh runs itself again: the lab starts the controller and each meshd as `mesh controller
 * start` / `mesh daemon run` child processes, logs the CLI in with `mesh login`, and runs two
 * small Node scripts (the API forwarder, the UDP probe). Under Node that is the Node binary plus
 * bin/mesh.js (or the script); inside the single binary (Node's single-executable application,
 * scripts/build-binary.sh) there is no separate Node: the binary itself is both, and its launcher
 * (scripts/sea-launcher.cjs) runs a script of the app when asked with SEA_NODE_SCRIPT_FLAG.
 */
import fs from 'node:fs'
import path from 'node:path'
import {isSea} from 'node:sea'
import {fileURLToPath} from 'node:url'

/** The launcher's private first argument: run the app's Node script named next, not the CLI. */
export const SEA_NODE_SCRIPT_FLAG = '--mesh-internal-node-script'

/** True inside the single binary. */
export const inSingleBinary = (): boolean => isSea()

/**
 * The package root (the repository, the installed package, or the single binary's unpacked
 * copy): where package.json, bin/mesh.js and dist/ are.
 */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 8; i++) {
    const pkg = path.join(dir, 'package.json')
    if (fs.existsSync(pkg) && fs.existsSync(path.join(dir, 'bin', 'mesh.js'))) return dir
    dir = path.dirname(dir)
  }
  throw new Error('cannot find the mesh package root (bin/mesh.js)')
}

export const meshJs = (): string => path.join(projectRoot(), 'bin', 'mesh.js')

/** The command line that runs the mesh CLI: argv[0] is the program, the rest come first. */
export function meshArgv(): string[] {
  return inSingleBinary() ? [process.execPath] : [process.execPath, meshJs()]
}

/** The command line that runs one of the app's Node scripts (a file under projectRoot()). */
export function nodeScriptArgv(script: string): string[] {
  return inSingleBinary() ? [process.execPath, SEA_NODE_SCRIPT_FLAG, script] : [process.execPath, script]
}

/** A POSIX shell word for `s` (single quotes; a quote inside becomes '\''). */
export const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`
