/**
 * `mesh controller backup FILE`: an online, consistent backup of the controller's database
 * (SQLite or PostgreSQL) while it runs. Same settings as `controller start`.
 */
import {Args} from '@oclif/core'
import {configFlag, loadSection, settingFlag} from '../../lib/config/index.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class ControllerBackup extends MeshCommand {
  static override summary = "Back up the controller's database while it runs"
  static override description = `Writes one consistent snapshot of every table to FILE (gzip'd JSON lines, mode 0600: it holds
password and secret hashes), from the database --database names (default: the SQLite file in the
data dir). The controller may keep running: SQLite is read from one read transaction, PostgreSQL
from one REPEATABLE READ snapshot. The file is written beside FILE and renamed only when
complete. A backup restores onto either backend (\`mesh controller restore\`), so it also moves a
controller from SQLite to PostgreSQL. TOTP secrets are in it only sealed with the secrets key
(DATA_DIR/secrets.key or --secrets-key-file), which it does not copy: keep a copy of that file
wherever backups are kept, stored separately, or MFA must be reset after a restore (README:
Backups and the secrets key).`
  static override examples = [
    '<%= config.bin %> controller backup /srv/backups/mesh-$(date +%F).backup',
    '<%= config.bin %> controller backup mesh.backup --database postgres://mesh:secret@db.example.com/mesh',
  ]
  static override enableJsonFlag = true
  static override args = {
    file: Args.string({description: 'where to write the backup', required: true}),
  }
  static override flags = {
    'data-dir': settingFlag.string('controller.dataDir'),
    database: settingFlag.string('controller.database'),
    config: configFlag(),
  }

  async run(): Promise<{file: string; rows: number; bytes: number; schema: string; source: string}> {
    const {args, flags} = await this.parse(ControllerBackup)
    const {values: v} = await loadSection('controller', flags)
    const {backupController} = await import('../../../controller/main.js')
    const r = await backupController({
      dataDir: v.dataDir as string,
      database: v.database as string | undefined,
      file: args.file,
    })
    this.log(`backed up ${r.rows} rows (${r.source}, schema ${r.schema}) to ${r.file} (${r.bytes} bytes)`)
    return r
  }
}
