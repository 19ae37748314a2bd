// Bundles the CLI for start-up speed (run by scripts/build.sh after tsc and the manifest).
//
// Unbundled, `mesh status --json` resolves and compiles ~420 module files (oclif alone ~150,
// zod ~95, undici ~100) before it reaches meshd's socket. esbuild turns every command into one
// entry point of a code-split ESM bundle in dist/bundle/: each command file, plus the chunks it
// shares with others, and one copy of @oclif/core for all of them (a second copy would be a
// second oclif). Modules a command imports lazily (Ink in `status`, the daemon in `daemon run`,
// the controller in `controller start`) stay lazy: esbuild keeps dynamic import() as a chunk
// that loads only when that line runs.
//
// dist/bundle/ is an oclif root of its own: package.json (the project's, unchanged but for the
// command dir) and oclif.manifest.json (the checked-in one, paths pointing into the bundle), so
// oclif discovers commands exactly as it does from dist/cli/commands. bin/mesh.js runs it when
// it is there and falls back to dist/ otherwise.
import fs from 'node:fs'
import path from 'node:path'
import {build} from 'esbuild'

const root = path.resolve(import.meta.dirname, '..')
const out = path.join(root, 'dist', 'bundle')
const pjson = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'oclif.manifest.json'), 'utf8'))

// Native addons cannot be bundled: better-sqlite3 loads its .node file by path at run time.
// react-devtools-core is an optional peer of Ink, imported only under DEV=true; not installed.
// typescript (9.7 MB) is what oclif's tsconfig reader tries for TypeScript plugins, inside a
// try/catch; we ship compiled commands, so it stays out.
// pg-native is node-postgres' optional libpq binding, required only when `pg.native` is read
// (never by mesh); pg 8.23 wraps that require in try/catch, so esbuild would leave it alone
// anyway: named here so a pg release without the try/catch cannot break the build.
const EXTERNAL = ['better-sqlite3', 'react-devtools-core', 'typescript', 'pg-native']

// `undici` → the three things mesh uses of it (see scripts/bundle-undici.cjs); and its HTTP/2
// client, which undici's HTTP/1 client requires at load and which loads node:http2 (≈ 10 ms,
// never used: meshd and the controller speak HTTP/1.1), only when undici calls it.
const undiciSlim = {
  name: 'undici-slim',
  setup(b) {
    b.onResolve({filter: /^undici$/}, () => ({path: path.join(root, 'scripts', 'bundle-undici.cjs')}))
    b.onResolve({filter: /^\.\/client-h2\.js$/}, (args) =>
      args.importer.endsWith(path.join('undici', 'lib', 'dispatcher', 'client.js'))
        ? {path: 'lazy-client-h2', namespace: 'mesh-bundle'}
        : undefined,
    )
    b.onLoad({filter: /^lazy-client-h2$/, namespace: 'mesh-bundle'}, () => ({
      contents:
        "'use strict'\nmodule.exports = (client, socket) => require('undici/lib/dispatcher/client-h2.js')(client, socket)\n",
      loader: 'js',
      resolveDir: root,
    }))
  },
}

// jsonc-parser's `main` is a UMD build whose factory require()s './impl/format' and friends at
// run time, which a bundle does not have ("Cannot find module './impl/format'"); its `module`
// entry is plain ESM, which esbuild bundles like any other.
const jsoncEsm = {
  name: 'jsonc-parser-esm',
  setup(b) {
    b.onResolve({filter: /^jsonc-parser$/}, () => ({
      path: path.join(root, 'node_modules', 'jsonc-parser', 'lib', 'esm', 'main.js'),
    }))
  },
}

// Our zod schemas are plain values: a command that imports one schema of a module need not
// build the other hundred (zod's schema construction was the largest single cost of `mesh
// status --json`). esbuild drops an unused top-level value only when it knows it is free of side
// effects, so the top-level `const X = z...` and `const X = YSchema.extend(...)`-style
// declarations of our compiled code are marked pure (nothing in them registers anything).
const PURE_SCHEMA =
  /^((?:export )?const \w+ = )(z\b|\w+Schema\s*\.\s*(?:extend|pick|omit|partial|merge|and|or|array|nullable|optional|refine|superRefine|transform|strict|passthrough)\b)/gm
// And `import {z} from 'zod'` makes esbuild keep all of zod (the namespace object z, with every
// locale), while `import * as z` from zod's module that defines that namespace lets it keep only
// the members the code names. Same module as zod's index imports: one zod, not two.
const ZOD_IMPORT = /^import \{ z \} from 'zod';$/gm
const zodNamespace = path.join(root, 'node_modules', 'zod', 'v4', 'classic', 'external.js')
const pureSchemas = {
  name: 'pure-schemas',
  setup(b) {
    b.onLoad({filter: /[\\/]dist[\\/](shared|cli|daemon|controller)[\\/].*\.js$/}, async (args) => ({
      contents: (await fs.promises.readFile(args.path, 'utf8'))
        .replace(PURE_SCHEMA, '$1/* @__PURE__ */ $2')
        .replace(ZOD_IMPORT, `import * as z from ${JSON.stringify(zodNamespace)};`),
      loader: 'js',
    }))
  },
}

// oclif asks `await import('wsl-utils')` on every start whether this is WSL (the platform in
// `mesh --version`): in a code-split bundle that is one more chunk to find, read and link
// (≈ 5 ms). Required in place instead, the same code runs from the chunk oclif is in.
const inlineWslUtils = {
  name: 'inline-wsl-utils',
  setup(b) {
    b.onLoad({filter: /[\\/]@oclif[\\/]core[\\/]lib[\\/]util[\\/]os\.js$/}, async (args) => ({
      contents: (await fs.promises.readFile(args.path, 'utf8')).replaceAll(
        "await import('wsl-utils')",
        "require('wsl-utils')",
      ),
      loader: 'js',
    }))
  },
}

const entryPoints = {oclif: path.join(root, 'scripts', 'bundle-oclif-entry.mjs')}
const bundledManifest = {...manifest, commands: {}}
for (const [id, cmd] of Object.entries(manifest.commands)) {
  // relativePath is [dist, cli, commands, ..., file.js], relative to the root.
  const rel = cmd.relativePath.slice(3)
  entryPoints[`commands/${rel.join('/').replace(/\.js$/, '')}`] = path.join(root, ...cmd.relativePath)
  bundledManifest.commands[id] = {...cmd, relativePath: ['commands', ...rel]}
}
// Our hooks (package.json oclif.hooks, e.g. command_not_found) are entry points too, and the
// bundle's package.json names their bundled files.
const bundledHooks = {}
for (const [event, target] of Object.entries(pjson.oclif.hooks ?? {})) {
  const list = Array.isArray(target) ? target : [target]
  bundledHooks[event] = list.map((t) => {
    // './dist/cli/hooks/x' -> entry 'hooks/x'
    const rel = path.relative(path.join(root, 'dist', 'cli'), path.join(root, t))
    entryPoints[rel] = path.join(root, `${t}.js`)
    return `./${rel}`
  })
}
// oclif plugins (@oclif/plugin-help's `help`) become commands of the bundle: a plugin loaded
// from node_modules would bring its own unbundled copy of @oclif/core (and need node_modules,
// which the single binary does not ship).
for (const name of pjson.oclif.plugins ?? []) {
  const pluginRoot = path.join(root, 'node_modules', ...name.split('/'))
  const pm = JSON.parse(fs.readFileSync(path.join(pluginRoot, 'oclif.manifest.json'), 'utf8'))
  for (const [id, cmd] of Object.entries(pm.commands)) {
    const file = `plugin-${id.replaceAll(':', '-')}`
    entryPoints[`commands/${file}`] = path.join(pluginRoot, ...cmd.relativePath)
    bundledManifest.commands[id] = {
      ...cmd,
      pluginName: pjson.name,
      pluginAlias: pjson.name,
      relativePath: ['commands', `${file}.js`],
    }
  }
}

// A fresh directory, renamed into place: a mesh process that starts during the build sees the
// old bundle or the new one, never half of each.
const tmp = `${out}.tmp-${process.pid}`
fs.rmSync(tmp, {recursive: true, force: true})
const result = await build({
  entryPoints,
  outdir: tmp,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  external: EXTERNAL,
  plugins: [undiciSlim, pureSchemas, inlineWslUtils, jsoncEsm],
  // oclif checks the Node version against its own engines field with semver when it loads
  // (≈ 8 ms, semver is used nowhere else); bin/mesh.js has already checked it, with a clearer
  // error. This turns that check off inside the bundle only, not in the environment.
  define: {'process.env.OCLIF_DISABLE_ENGINE_WARNING': '"1"'},
  // Dependencies written as CommonJS call require() and read __dirname; ESM has neither.
  banner: {
    js: [
      "import {createRequire as __meshCreateRequire} from 'node:module'",
      "import {fileURLToPath as __meshFileURLToPath} from 'node:url'",
      "import {dirname as __meshDirname} from 'node:path'",
      'const require = __meshCreateRequire(import.meta.url)',
      'const __filename = __meshFileURLToPath(import.meta.url)',
      'const __dirname = __meshDirname(__filename)',
    ].join(';'),
  },
  chunkNames: 'chunks/[name]-[hash]',
  legalComments: 'none',
  logLevel: 'warning',
  metafile: Boolean(process.env.MESH_BUNDLE_META),
  // No minification: stack traces under --verbose stay readable; minifying saved < 10 ms.
})
fs.writeFileSync(
  path.join(tmp, 'package.json'),
  JSON.stringify(
    {...pjson, oclif: {...pjson.oclif, commands: './commands', plugins: [], hooks: bundledHooks}},
    null,
    2,
  ) + '\n',
)
fs.writeFileSync(path.join(tmp, 'oclif.manifest.json'), JSON.stringify(bundledManifest, null, 2) + '\n')
const old = `${out}.old-${process.pid}`
if (fs.existsSync(out)) fs.renameSync(out, old)
fs.renameSync(tmp, out)
fs.rmSync(old, {recursive: true, force: true})
// MESH_BUNDLE_META=FILE: esbuild's metafile, to see what went into which chunk (esbuild --analyze).
if (process.env.MESH_BUNDLE_META)
  fs.writeFileSync(process.env.MESH_BUNDLE_META, JSON.stringify(result.metafile))
