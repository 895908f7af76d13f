import { Effect, Redacted } from "effect"
import pg from "pg"
import { makePool } from "../../core/Database.ts"
import { migrate } from "../../core/Migrations.ts"
import { buildRegistry } from "../../core/Registry.ts"
import { migrationTimelines } from "../../runtime/App.ts"
import { catalog } from "../../runtime/plugins.ts"
import { decodePluginOptions } from "../../runtime/Config.ts"

export const databaseUrl = (adminUrl: string, database: string) => {
  const url = new URL(adminUrl)
  url.pathname = `/${database}`
  return url.toString()
}

/** Every plugin of the catalog with its default options. */
export const allPlugins = () =>
  Effect.runPromise(Effect.forEach(catalog, (m) => Effect.map(decodePluginOptions(m.name, m.options, true), m.make)))

/** (Re)creates `template` and runs every migration of core and the catalog's plugins on it. */
export const migrateTemplate = async (adminUrl: string, template: string) => {
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  try {
    await admin.query(`drop database if exists ${template} with (force)`)
    await admin.query(`create database ${template}`)
  } finally {
    await admin.end()
  }
  const pool = makePool({ url: Redacted.make(databaseUrl(adminUrl, template)), max: 2 })
  try {
    const registry = buildRegistry(await allPlugins())
    await Effect.runPromise(migrate(pool, migrationTimelines(registry)))
  } finally {
    await pool.end()
  }
}
