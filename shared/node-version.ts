/**
 * The Node.js version gate: mesh refuses to run on a Node older than this. Plain code with no
 * imports, so bin/mesh.js can load it on any Node and print a clear error (on Node 20,
 * better-sqlite3 would crash with SIGSEGV instead).
 */
export const MIN_NODE_MAJOR = 24

export function nodeVersionProblem(version: string = process.versions.node): string | undefined {
  const major = Number(version.split('.')[0])
  if (Number.isInteger(major) && major >= MIN_NODE_MAJOR) return undefined
  return `mesh needs Node.js ${MIN_NODE_MAJOR} or newer; this is Node.js ${version}`
}
