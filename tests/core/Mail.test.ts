import { mkdtemp, readdir, rm } from "node:fs/promises"
import { createServer, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, Redacted } from "effect"
import { SMTPServer, type SMTPServerOptions } from "smtp-server"
import { layerOutbox, layerSmtp, Mailer, readOutbox } from "../../core/Mail.ts"

interface Received {
  readonly rcptTo: ReadonlyArray<string>
  readonly raw: string
}

/** A real SMTP server on a free local port, closed with the test's scope. */
const smtpServer = (options: SMTPServerOptions = {}) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; received: ReadonlyArray<Received>; server: SMTPServer }>((resume) => {
      const received: Array<Received> = []
      const server = new SMTPServer({
        authOptional: true,
        disabledCommands: ["STARTTLS"],
        logger: false,
        ...options,
        onData(stream, session, callback) {
          const chunks: Array<Buffer> = []
          stream.on("data", (chunk: Buffer) => chunks.push(chunk))
          stream.on("end", () => {
            received.push({
              rcptTo: session.envelope.rcptTo.map((rcpt) => rcpt.address),
              raw: Buffer.concat(chunks).toString("utf8")
            })
            callback()
          })
        }
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.server.address() as AddressInfo
        resume(Effect.succeed({ port, received, server }))
      })
    }),
    ({ server }) => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
  )

/** A port nothing listens on: bound once by us, then released. */
const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const smtpUrl = (port: number, auth = "") =>
  Redacted.make(`smtp://${auth}127.0.0.1:${port}?ignoreTLS=true&connectionTimeout=2000`)

const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "trellis-mail-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

describe("Mail", () => {
  it.scopedLive("layerSmtp delivers to an SMTP server", () =>
    Effect.gen(function* () {
      const { port, received } = yield* smtpServer()
      const result = yield* Effect.gen(function* () {
        const mailer = yield* Mailer
        expect(mailer.transport).toBe("smtp")
        yield* mailer.verify
        return yield* mailer.send({
          to: "alice@example.com",
          subject: "Welcome to Trellis",
          text: "Your account is ready."
        })
      }).pipe(Effect.provide(layerSmtp({ url: smtpUrl(port), from: "noreply@trellis.test" })))

      expect(result.messageId).toMatch(/^<.+@trellis\.test>$/)
      expect(received).toHaveLength(1)
      const [message] = received
      expect(message.rcptTo).toEqual(["alice@example.com"])
      expect(message.raw).toContain("Subject: Welcome to Trellis")
      expect(message.raw).toContain("From: noreply@trellis.test")
      expect(message.raw).toContain("Your account is ready.")
      expect(message.raw).toContain(`Message-ID: ${result.messageId}`)
    })
  )

  it.scopedLive("layerSmtp fails with MailError when nothing listens", () =>
    Effect.gen(function* () {
      const port = yield* closedPort
      const layer = layerSmtp({ url: smtpUrl(port), from: "noreply@trellis.test" })
      const sendError = yield* Mailer.pipe(
        Effect.flatMap((mailer) => mailer.send({ to: "a@example.com", subject: "s", text: "t" })),
        Effect.provide(layer),
        Effect.flip
      )
      expect(sendError._tag).toBe("MailError")
      expect(sendError.message).toMatch(/^SMTP send failed: .*ECONNREFUSED/)

      const verifyError = yield* Effect.flatMap(Mailer, (mailer) => mailer.verify).pipe(
        Effect.provide(layer),
        Effect.flip
      )
      expect(verifyError._tag).toBe("MailError")
      expect(verifyError.message).toMatch(/^SMTP verify failed: /)
    })
  )

  it.scopedLive("SMTP errors never carry the credentials, even when the server echoes them", () =>
    Effect.gen(function* () {
      const { port } = yield* smtpServer({
        allowInsecureAuth: true,
        onAuth(auth, _session, callback) {
          callback(new Error(`no such login ${auth.username}/${auth.password}`))
        }
      })
      const error = yield* Effect.flatMap(Mailer, (mailer) =>
        mailer.send({ to: "a@example.com", subject: "s", text: "t" })
      ).pipe(
        Effect.provide(
          layerSmtp({ url: smtpUrl(port, "mailer-user:s%40cret-pa55@"), from: "noreply@trellis.test" })
        ),
        Effect.flip
      )
      expect(error.message).toContain("no such login ***/***")
      expect(error.message).not.toContain("s@cret-pa55")
      expect(error.message).not.toContain("mailer-user")
    })
  )

  it.scopedLive("layerOutbox writes each message as JSON that readOutbox returns in order", () =>
    Effect.gen(function* () {
      const base = yield* tempDir
      const dir = join(base, "nested", "outbox")
      const logs: Array<{ message: unknown; annotations: Record<string, unknown> }> = []
      const captureLogs = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ message, annotations }) => {
          logs.push({ message, annotations: Object.fromEntries(annotations) })
        })
      )

      const sent = yield* Effect.gen(function* () {
        const mailer = yield* Mailer
        expect(mailer.transport).toBe("outbox")
        yield* mailer.verify
        const first = yield* mailer.send({
          to: "alice@example.com",
          subject: "First",
          text: "secret body one"
        })
        const second = yield* mailer.send({
          to: ["bob@example.com", "carol@example.com"],
          subject: "Second",
          text: "secret body two",
          html: "<p>two</p>",
          from: "support@trellis.test",
          replyTo: "help@trellis.test"
        })
        return [first, second]
      }).pipe(Effect.provide(Layer.merge(layerOutbox({ dir, from: "noreply@trellis.test" }), captureLogs)))

      const files = yield* Effect.promise(() => readdir(dir))
      expect(files).toHaveLength(2)

      const messages = yield* readOutbox(dir)
      expect(messages.map((m) => m.messageId)).toEqual(sent.map((s) => s.messageId))
      expect(messages.map((m) => m.subject)).toEqual(["First", "Second"])
      expect(messages.map((m) => m.text)).toEqual(["secret body one", "secret body two"])
      expect(messages.map((m) => m.to.map((a) => a.address))).toEqual([
        ["alice@example.com"],
        ["bob@example.com", "carol@example.com"]
      ])
      expect(messages[0].from.address).toBe("noreply@trellis.test")
      expect(messages[1].from.address).toBe("support@trellis.test")
      expect(messages[1].html).toBe("<p>two</p>")
      expect(messages[1].replyTo?.map((a) => a.address)).toEqual(["help@trellis.test"])
      expect(messages[0].time < messages[1].time).toBe(true)
      expect(messages[0].file.startsWith(join(dir, messages[0].time))).toBe(true)

      expect(logs).toHaveLength(2)
      expect(logs[1].message).toEqual(["mail written to outbox"])
      expect(logs[1].annotations).toEqual({
        "mail.file": messages[1].file,
        "mail.to": "bob@example.com, carol@example.com",
        "mail.subject": "Second"
      })
      expect(JSON.stringify(logs)).not.toContain("secret body")
    })
  )

  it.scopedLive("readOutbox of a directory never written to is empty", () =>
    Effect.gen(function* () {
      const base = yield* tempDir
      expect(yield* readOutbox(join(base, "missing"))).toEqual([])
    })
  )
})
