import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authentication } from "../../core/Auth.ts"
import { BadRequest, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized } from "../../core/Errors.ts"
import {
  AddUserRequest,
  CreatedOrg,
  CreateOrgRequest,
  ApiKey,
  AuditPage,
  AuditParams,
  ChangePasswordRequest,
  ChangeRoleRequest,
  CreateApiKeyRequest,
  CreatedApiKey,
  KeyIdPath,
  LoginRequest,
  Me,
  Member,
  RefreshRequest,
  TokenResponse,
  UserIdPath
} from "./Domain.ts"

/**
 * What a route needs, for readers of the OpenAPI document: in the description and as the
 * `x-required-permission` extension (`none` for the anonymous session routes).
 */
const requires = (permission: string, summary: string) =>
  OpenApi.annotations({
    summary,
    description:
      permission === "none"
        ? "No authentication"
        : permission === "authenticated"
          ? "Requires any authenticated caller"
          : `Requires permission ${permission}`,
    override: { "x-required-permission": permission }
  })

/** Anonymous: these routes issue and revoke the credentials the others need. */
export class SessionGroup extends HttpApiGroup.make("session")
  .add(
    HttpApiEndpoint.post("login", "/login")
      .setPayload(LoginRequest)
      .addSuccess(TokenResponse)
      .addError(Unauthorized)
      .addError(Forbidden)
      .addError(TooManyRequests)
      .annotateContext(requires("none", "Log in with email and password; returns an access and a refresh token"))
  )
  .add(
    HttpApiEndpoint.post("refresh", "/refresh")
      .setPayload(RefreshRequest)
      .addSuccess(TokenResponse)
      .addError(Unauthorized)
      .annotateContext(requires("none", "Exchange a refresh token for new tokens (the old one is spent)"))
  )
  .add(
    HttpApiEndpoint.post("logout", "/logout")
      .setPayload(RefreshRequest)
      .addSuccess(Schema.Void, { status: 204 })
      .annotateContext(requires("none", "Revoke the session of a refresh token"))
  )
  .prefix("/api/v1/identity") {}

export class IdentityGroup extends HttpApiGroup.make("identity")
  .add(
    HttpApiEndpoint.get("me", "/me")
      .addSuccess(Me)
      .annotateContext(requires("authenticated", "The caller: user, organisation, roles and permissions"))
  )
  .add(
    HttpApiEndpoint.post("changePassword", "/password")
      .setPayload(ChangePasswordRequest)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(Forbidden)
      .annotateContext(requires("authenticated", "Change the signed-in user's password; every refresh token of the user is revoked"))
  )
  .add(
    HttpApiEndpoint.get("members", "/members")
      .addSuccess(Schema.Array(Member))
      .annotateContext(requires("identity:read", "Members of the caller's organisation"))
  )
  .add(
    HttpApiEndpoint.post("createOrg", "/orgs")
      .setPayload(CreateOrgRequest)
      .addSuccess(CreatedOrg, { status: 201 })
      .addError(BadRequest)
      .addError(Conflict)
      .annotateContext(requires("operator", "Create an organisation with its first owner (the operator key only)"))
  )
  .add(
    HttpApiEndpoint.post("addUser", "/users")
      .setPayload(AddUserRequest)
      .addSuccess(Member, { status: 201 })
      .addError(BadRequest)
      .addError(Conflict)
      .annotateContext(requires("identity:admin", "Create a user (or take an existing one) and add them to the organisation"))
  )
  .add(
    HttpApiEndpoint.patch("changeRole", "/members/:userId")
      .setPath(UserIdPath)
      .setPayload(ChangeRoleRequest)
      .addSuccess(Member)
      .addError(NotFound)
      .addError(Conflict)
      .annotateContext(requires("identity:admin", "Change a member's role (the owner role takes identity:owner)"))
  )
  .add(
    HttpApiEndpoint.del("removeMember", "/members/:userId")
      .setPath(UserIdPath)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(NotFound)
      .addError(Conflict)
      .annotateContext(requires("identity:admin", "Remove a member (an owner takes identity:owner)"))
  )
  .add(
    HttpApiEndpoint.post("createApiKey", "/api-keys")
      .setPayload(CreateApiKeyRequest)
      .addSuccess(CreatedApiKey, { status: 201 })
      .addError(BadRequest)
      .annotateContext(requires("identity:admin", "Create an API key; the key is in this response only"))
  )
  .add(
    HttpApiEndpoint.get("apiKeys", "/api-keys")
      .addSuccess(Schema.Array(ApiKey))
      .annotateContext(requires("identity:admin", "The organisation's API keys (never their secrets)"))
  )
  .add(
    HttpApiEndpoint.del("revokeApiKey", "/api-keys/:id")
      .setPath(KeyIdPath)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(NotFound)
      .annotateContext(requires("identity:admin", "Revoke an API key"))
  )
  .add(
    HttpApiEndpoint.get("audit", "/audit")
      .setUrlParams(AuditParams)
      .addSuccess(AuditPage)
      .annotateContext(requires("identity:admin", "The organisation's audit log, newest first"))
  )
  .addError(Forbidden)
  .middleware(Authentication)
  .prefix("/api/v1/identity") {}

export class IdentityApi extends HttpApi.make("identity").add(SessionGroup).add(IdentityGroup) {}
