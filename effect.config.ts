import { defineConfig } from "./runtime/Config.ts"

/**
 * The app's configuration: which plugins are enabled and their options. Environment
 * variables (see README) override the rest, so one file serves every environment.
 */
export default defineConfig({
  plugins: {
    ops: { retentionDays: 30, pruneSchedule: "17 3 * * *" },
    identity: {
      accessTokenTtlSeconds: 900,
      refreshTokenTtlDays: 30,
      lockoutThreshold: 5,
      lockoutMinutes: 15,
      loginRateLimit: { limit: 20, windowSeconds: 60 },
      bootstrapOrgName: "Default"
    },
    webhooks: { requireHttps: true, allow: [] },
    inventory: { expirySchedule: "* * * * *" },
    // A channel: { name: "amazon", orgId: "<org uuid>", url: "https://...", schedule: "* * * * *" }
    orders: { channels: [] },
    flags: {
      defaultEnvironment: "production",
      environments: ["development", "production"],
      cacheTtlSeconds: 60,
      staleSchedule: "0 6 * * *"
    }
  },
  http: { port: 3000, host: "127.0.0.1" },
  worker: { concurrency: 10, localQueueSize: 500 },
  mail: { from: "Trellis <trellis@localhost>" }
})
