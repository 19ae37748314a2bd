#!/usr/bin/env node
// Entry point of the `mesh` CLI (and of meshd and the controller, which are its commands).
// The Node version is checked before anything else loads: better-sqlite3 crashes on Node 20.
import {fileURLToPath} from 'node:url'
import {nodeVersionProblem} from '../dist/shared/node-version.js'

const problem = nodeVersionProblem()
if (problem) {
  process.stderr.write(
    `Error: ${problem} (NODE_VERSION_UNSUPPORTED)\nHint: install Node.js 24 LTS; scripts/node-env.sh fetches it from the npm registry\n`,
  )
  process.exit(78)
}

// Node's on-disk cache of compiled code cuts start-up by ~60 ms. It lives beside the code it
// caches (dist/), so only whoever can change mesh can change the cache: never a shared /tmp dir,
// whose bytecode another user could plant for root's meshd. Where dist/ is read-only, it is off.
const {enableCompileCache} = await import('node:module')
enableCompileCache?.(fileURLToPath(new URL('../dist/.compile-cache', import.meta.url)))

// `mesh ... | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

// The bundled CLI (scripts/bundle.mjs, dist/bundle/) starts in about half the time: a few files
// instead of ~420. MESH_NO_BUNDLE=1 (or a build without it) runs the plain tsc output instead.
const bundle = new URL('../dist/bundle/', import.meta.url)
const {existsSync} = await import('node:fs')
if (process.env.MESH_NO_BUNDLE !== '1' && existsSync(new URL('oclif.manifest.json', bundle))) {
  const {execute} = await import(new URL('oclif.js', bundle).href)
  await execute({dir: new URL('package.json', bundle).href})
} else {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
