import { constants } from "node:fs"
import { access, mkdir, readdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Clock, Context, Effect, Layer, Redacted, Ref, Schema } from "effect"
import nodemailer from "nodemailer"
import type { SendMailOptions } from "nodemailer"

/**
 * Outgoing mail. Production sends over SMTP (`layerSmtp`); development and tests use the
 * outbox (`layerOutbox`), which writes each message as the JSON nodemailer would send, so
 * nothing leaves the machine and the mail can still be inspected (`readOutbox`).
 */

export interface MailMessage {
  readonly to: string | ReadonlyArray<string>
  readonly subject: string
  readonly text: string
  readonly html?: string
  readonly from?: string
  readonly replyTo?: string
}

export class MailError extends Schema.TaggedError<MailError>()("MailError", {
  message: Schema.String
}) {}

export class Mailer extends Context.Tag("trellis/Mailer")<
  Mailer,
  {
    readonly transport: "smtp" | "outbox"
    send(message: MailMessage): Effect.Effect<{ readonly messageId: string }, MailError>
    readonly verify: Effect.Effect<void, MailError>
  }
>() {}

const toSendMailOptions = (defaultFrom: string, message: MailMessage): SendMailOptions => ({
  from: message.from ?? defaultFrom,
  // nodemailer's types want a mutable array; it never writes to it.
  to: typeof message.to === "string" ? message.to : [...message.to],
  subject: message.subject,
  text: message.text,
  ...(message.html === undefined ? {} : { html: message.html }),
  ...(message.replyTo === undefined ? {} : { replyTo: message.replyTo })
})

/** nodemailer errors carry a `code` (ECONNECTION, EAUTH, ...) that says more than the text. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    const code = "code" in cause && typeof cause.code === "string" ? ` (${cause.code})` : ""
    return `${cause.message}${code}`
  }
  return String(cause)
}

/**
 * Everything of an SMTP URL that is a credential, longest first so the whole URL is
 * replaced before its parts. Server replies can echo what the client sent (a rejected
 * login), so error texts are scrubbed of these before they leave this module.
 */
const secretsOf = (url: string): ReadonlyArray<string> => {
  const secrets = [url]
  if (URL.canParse(url)) {
    const { username, password } = new URL(url)
    for (const part of [username, password]) {
      secrets.push(part)
      // nodemailer sends the percent-decoded form.
      try {
        secrets.push(decodeURIComponent(part))
      } catch {
        // Not valid percent-encoding: the form as written is the only one.
      }
    }
  }
  return secrets.filter((s) => s !== "").sort((a, b) => b.length - a.length)
}

const scrub = (text: string, secrets: ReadonlyArray<string>) =>
  secrets.reduce((acc, secret) => acc.replaceAll(secret, "***"), text)

/** Sends over SMTP; `url` is e.g. `smtps://user:pass@smtp.example.com` (query parameters become nodemailer options). */
export const layerSmtp = (options: { url: Redacted.Redacted<string>; from: string }) =>
  Layer.scoped(
    Mailer,
    Effect.gen(function* () {
      const secrets = secretsOf(Redacted.value(options.url))
      const fail = (what: string) => (cause: unknown) =>
        new MailError({ message: `${what}: ${scrub(describe(cause), secrets)}` })
      const transporter = yield* Effect.acquireRelease(
        Effect.sync(() => nodemailer.createTransport(Redacted.value(options.url))),
        (transporter) => Effect.sync(() => transporter.close())
      )
      return Mailer.of({
        transport: "smtp",
        send: (message) =>
          Effect.tryPromise({
            try: () => transporter.sendMail(toSendMailOptions(options.from, message)),
            catch: fail("SMTP send failed")
          }).pipe(
            Effect.map((info) => ({ messageId: info.messageId })),
            Effect.withSpan("mail.send", { attributes: { "mail.transport": "smtp" } })
          ),
        verify: Effect.tryPromise({
          try: () => transporter.verify(),
          catch: fail("SMTP verify failed")
        }).pipe(Effect.asVoid)
      })
    })
  )

const outboxFile = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)-.+\.json$/

/** Writes each message to `<dir>/<ISO time>-<messageId>.json` instead of sending it. */
export const layerOutbox = (options: { dir: string; from: string }) =>
  Layer.effect(
    Mailer,
    Effect.gen(function* () {
      yield* Effect.tryPromise({
        try: () => mkdir(options.dir, { recursive: true }),
        catch: (cause) =>
          new MailError({ message: `cannot create outbox ${options.dir}: ${describe(cause)}` })
      })
      const transporter = nodemailer.createTransport({ jsonTransport: true })
      // File names order the outbox; two sends in the same millisecond would otherwise be
      // ordered by their random message ids.
      const lastMillis = yield* Ref.make(Number.NEGATIVE_INFINITY)
      const nextTime = Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.modify(lastMillis, (last) => {
          const millis = Math.max(now, last + 1)
          return [new Date(millis).toISOString(), millis]
        })
      )
      return Mailer.of({
        transport: "outbox",
        send: (message) =>
          Effect.gen(function* () {
            const info = yield* Effect.tryPromise({
              try: () => transporter.sendMail(toSendMailOptions(options.from, message)),
              catch: (cause) => new MailError({ message: `cannot build message: ${describe(cause)}` })
            })
            const safeId = info.messageId.replace(/^<|>$/g, "").replace(/[^A-Za-z0-9._@-]/g, "_")
            const file = join(options.dir, `${yield* nextTime}-${safeId}.json`)
            yield* Effect.tryPromise({
              try: () => writeFile(file, info.message, { flag: "wx" }),
              catch: (cause) => new MailError({ message: `cannot write ${file}: ${describe(cause)}` })
            })
            yield* Effect.logInfo("mail written to outbox").pipe(
              Effect.annotateLogs({
                "mail.file": file,
                "mail.to": info.envelope.to.join(", "),
                "mail.subject": message.subject
              })
            )
            return { messageId: info.messageId }
          }).pipe(Effect.withSpan("mail.send", { attributes: { "mail.transport": "outbox" } })),
        verify: Effect.tryPromise({
          try: () => access(options.dir, constants.W_OK),
          catch: (cause) =>
            new MailError({ message: `outbox ${options.dir} is not writable: ${describe(cause)}` })
        })
      })
    })
  )

const Address = Schema.Struct({ address: Schema.String, name: Schema.String })

/** The part of nodemailer's JSON message that readers need; other fields are ignored. */
const StoredMessage = Schema.Struct({
  messageId: Schema.String,
  from: Address,
  to: Schema.Array(Address),
  replyTo: Schema.optional(Schema.Array(Address)),
  subject: Schema.String,
  text: Schema.String,
  html: Schema.optional(Schema.String)
})
const decodeStoredMessage = Schema.decodeUnknown(Schema.parseJson(StoredMessage))

export interface OutboxMessage extends Schema.Schema.Type<typeof StoredMessage> {
  readonly file: string
  /** When the message was written, as an ISO timestamp. */
  readonly time: string
}

/** The messages in an outbox, oldest first; a missing directory is an empty outbox. */
export const readOutbox = (dir: string): Effect.Effect<ReadonlyArray<OutboxMessage>, MailError> =>
  Effect.gen(function* () {
    const names = yield* Effect.tryPromise({
      try: () =>
        readdir(dir).catch((cause: unknown) => {
          if (cause instanceof Error && "code" in cause && cause.code === "ENOENT") return []
          throw cause
        }),
      catch: (cause) => new MailError({ message: `cannot read outbox ${dir}: ${describe(cause)}` })
    })
    const entries = names
      .flatMap((name) => {
        const match = outboxFile.exec(name)
        return match === null ? [] : [{ name, time: match[1] }]
      })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    return yield* Effect.forEach(entries, ({ name, time }) => {
      const file = join(dir, name)
      return Effect.tryPromise({
        try: () => readFile(file, "utf8"),
        catch: (cause) => new MailError({ message: `cannot read ${file}: ${describe(cause)}` })
      }).pipe(
        Effect.flatMap((json) =>
          decodeStoredMessage(json).pipe(
            Effect.mapError(
              (error) => new MailError({ message: `${file} is not an outbox message: ${error.message}` })
            )
          )
        ),
        Effect.map((message): OutboxMessage => ({ ...message, file, time }))
      )
    })
  })
