/**
 * `mesh controller restore FILE`: brings a backup back into an empty database.
 */
import {Args} from '@oclif/core'
import {configFlag, loadSection, settingFlag} from '../../lib/config/index.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class ControllerRestore extends MeshCommand {
  static override summary = 'Restore a controller backup into an empty database'
  static override description = `Loads a backup made by \`mesh controller backup\` into the database --database names: a SQLite
path that does not exist yet, or a PostgreSQL database without tenants (a new, empty one). The
database is brought to the backup's schema, filled in one transaction, then migrated to this
mesh's schema. Nothing is written when the backup is cut short or damaged (BACKUP_INVALID) or the
target is not empty (RESTORE_TARGET_NOT_EMPTY). Start the controller on the restored database
afterwards; nodes reconnect with their credentials as before. Put back the secrets key of the
backed-up controller too (DATA_DIR/secrets.key, or --secrets-key-file): a controller refuses to
start on MFA secrets sealed with a key it has not got (README: Backups and the secrets key).`
  static override examples = [
    '<%= config.bin %> controller restore mesh.backup --database sqlite:/var/lib/mesh-controller/mesh.db',
    '<%= config.bin %> controller restore mesh.backup --database postgres://mesh:secret@db.example.com/mesh',
  ]
  static override enableJsonFlag = true
  static override args = {
    file: Args.string({description: 'the backup file', required: true}),
  }
  static override flags = {
    'data-dir': settingFlag.string('controller.dataDir'),
    database: settingFlag.string('controller.database'),
    config: configFlag(),
  }

  async run(): Promise<{rows: number; schema: string; source: string; database: string}> {
    const {args, flags} = await this.parse(ControllerRestore)
    const {values: v} = await loadSection('controller', flags)
    const {restoreController} = await import('../../../controller/main.js')
    const r = await restoreController({
      dataDir: v.dataDir as string,
      database: v.database as string | undefined,
      file: args.file,
    })
    this.log(`restored ${r.rows} rows (from ${r.source}, schema ${r.schema}) into ${r.database}`)
    return r
  }
}
