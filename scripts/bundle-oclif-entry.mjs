// The bundle's own entry (scripts/bundle.mjs): bin/mesh.js imports oclif from here so that the
// commands and their launcher share the one copy of @oclif/core inside dist/bundle/.
export {execute} from '@oclif/core'
