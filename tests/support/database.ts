import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { inject } from "vitest"
import { databaseUrl } from "./template.ts"

const admin = async <A>(f: (client: pg.Client) => Promise<A>) => {
  const client = new pg.Client({ connectionString: inject("adminDatabaseUrl") })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

/**
 * A database of its own for a test (file): cloned from the migrated template, or empty
 * with `empty: true`; dropped when the scope closes.
 */
export const testDatabase = (options: { readonly empty?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const name = `trellis_test_${randomBytes(6).toString("hex")}`
      await admin((c) =>
        c.query(options.empty ? `create database ${name}` : `create database ${name} template ${inject("templateDatabase")}`)
      )
      return { name, url: databaseUrl(inject("adminDatabaseUrl"), name) }
    }),
    ({ name }) => Effect.promise(() => admin((c) => c.query(`drop database if exists ${name} with (force)`)))
  )

