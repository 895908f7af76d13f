import { Effect, Exit, Scope } from "effect"
import { rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pg from "pg"
import type { TestProject } from "vitest/node"
import { startEmbeddedPostgres } from "../../runtime/EmbeddedPostgres.ts"
import { migrateTemplate } from "./template.ts"

declare module "vitest" {
  export interface ProvidedContext {
    adminDatabaseUrl: string
    templateDatabase: string
  }
}

const canConnect = async (url: string) => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 })
  try {
    await client.connect()
    await client.query("select 1")
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => undefined)
  }
}

/**
 * Finds PostgreSQL (TEST_DATABASE_URL, DATABASE_URL, the local server, else an embedded
 * one) and migrates a template database once; every test file clones it.
 */
export default async function setup(project: TestProject) {
  const scope = Effect.runSync(Scope.make())
  let adminUrl = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL
  let embeddedDir: string | undefined
  if (adminUrl === undefined) {
    const local = "postgres://postgres@127.0.0.1:5432/postgres"
    if (await canConnect(local)) {
      adminUrl = local
    } else {
      embeddedDir = join(tmpdir(), `trellis-test-pg-${process.pid}`)
      const { url } = await Effect.runPromise(
        Scope.extend(startEmbeddedPostgres({ dataDir: join(embeddedDir, "pg"), database: "postgres" }), scope)
      )
      adminUrl = url
    }
  }
  const template = `trellis_template_${process.pid}`
  await migrateTemplate(adminUrl, template)
  project.provide("adminDatabaseUrl", adminUrl)
  project.provide("templateDatabase", template)

  return async () => {
    const admin = new pg.Client({ connectionString: adminUrl })
    await admin.connect()
    await admin.query(`drop database if exists ${template} with (force)`)
    await admin.end()
    await Effect.runPromise(Scope.close(scope, Exit.void))
    if (embeddedDir) await rm(embeddedDir, { recursive: true, force: true })
  }
}
