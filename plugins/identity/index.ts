import { Layer } from "effect"
import { definePlugin } from "../../core/Plugin.ts"
import { Admin } from "./Admin.ts"
import { AdminRepo } from "./AdminRepo.ts"
import { IdentityApi } from "./Api.ts"
import { layerBootstrap } from "./Bootstrap.ts"
import { IdentityOptions, Options } from "./Domain.ts"
import { IdentityHttpLive } from "./Http.ts"
import { PlatformRepo } from "./Repo.ts"
import { Sessions } from "./Sessions.ts"
import { makeTasks } from "./Tasks.ts"
import { Tokens } from "./Tokens.ts"
import { layerVerifier } from "./Verifier.ts"

/**
 * Organisations, users and their roles; login with access and refresh tokens; API keys; the
 * `CredentialVerifier` the platform's Authentication middleware uses; the first owner.
 */
export const identity = {
  name: "identity",
  options: IdentityOptions,
  make: (options: IdentityOptions) => {
    const { prune, cron } = makeTasks(options)
    const base = Layer.mergeAll(PlatformRepo.Default, AdminRepo.Default, Tokens.Default).pipe(
      Layer.provideMerge(Layer.succeed(Options, options))
    )
    const layer = Layer.mergeAll(Sessions.Default, Admin.Default, layerVerifier, layerBootstrap).pipe(Layer.provideMerge(base))
    return definePlugin({
      name: "identity",
      description: "Organisations, users, roles, tokens and API keys",
      api: IdentityApi,
      http: IdentityHttpLive,
      tasks: [prune],
      cron,
      layer,
      permissions: [
        { name: "identity:read", description: "List the organisation's members" },
        { name: "identity:admin", description: "Manage members, API keys and read the audit log" },
        { name: "identity:owner", description: "Grant and revoke the owner role" }
      ]
    })
  }
} as const
