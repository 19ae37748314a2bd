// `mesh config show`: every setting in effect, its value and where it came from.
import {Flags} from '@oclif/core'
import {configFlag} from '../../lib/config/index.js'
import {SECTIONS} from '../../lib/config/settings.js'
import {type ConfigShowResult, configShowText, showConfig} from '../../lib/config/show.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class ConfigShow extends MeshCommand {
  static override summary = 'Show the effective configuration and where each value comes from'
  static override description = `A value comes from a flag, else a MESH_* environment variable, else a config file, else the built-in default.
The CLI reads the first of .meshrc, .meshrc.{json,yaml,yml,js,cjs,mjs}, mesh.config.{js,cjs,mjs} or the "mesh" key of package.json in the current directory, then /etc/mesh/config.yaml; meshd and the controller read /etc/mesh/config.yaml only. That file must be YAML or JSON, and is refused when anyone but root or the reader may write it. MESH_CONFIG_FILE or --config names one file instead.
The daemon and controller settings are shown as \`mesh daemon run\` and \`mesh controller start\` would resolve them when started from this shell.`
  static override examples = [
    '<%= config.bin %> config show',
    '<%= config.bin %> config show --for daemon --json',
    '<%= config.bin %> config show --config ./staging.yaml',
  ]
  static override enableJsonFlag = true
  static override flags = {
    for: Flags.string({
      description: 'only the settings of this program [default: all]',
      options: [...SECTIONS],
    }),
    config: configFlag(),
  }

  async run(): Promise<ConfigShowResult> {
    const {flags} = await this.parse(ConfigShow)
    const sections = flags.for === undefined ? SECTIONS : SECTIONS.filter((s) => s === flags.for)
    const res = await showConfig(sections, flags)
    if (!this.jsonEnabled()) this.log(configShowText(res))
    return res
  }
}
