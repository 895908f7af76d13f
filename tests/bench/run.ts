/**
 * `npm run bench -- <name...>` runs the named benchmarks, or all of them without a name.
 * Modules load lazily, so naming one benchmark does not import the others.
 */
interface Benchmark {
  readonly run: () => Promise<void>
}

const benchmarks: Readonly<Record<string, () => Promise<Benchmark>>> = {
  jobs: () => import("./jobs.ts"),
  auth: () => import("./auth.ts"),
  orders: () => import("./orders.ts"),
  flags: () => import("./flags.ts"),
  webhooks: () => import("./webhooks.ts")
}

const main = async () => {
  const known = Object.keys(benchmarks)
  const requested = process.argv.slice(2)
  const unknown = requested.filter((name) => !Object.hasOwn(benchmarks, name))
  if (unknown.length > 0) {
    console.error(`unknown benchmark: ${unknown.join(", ")}; known: ${known.join(", ")}`)
    return 1
  }
  for (const name of requested.length > 0 ? requested : known) {
    try {
      const benchmark = await benchmarks[name]!()
      await benchmark.run()
    } catch (error) {
      console.error(`benchmark ${name} failed:`, error)
      return 1
    }
  }
  return 0
}

// Exiting explicitly: a benchmark that failed midway may leave timers or sockets behind,
// and the process must still stop by itself.
main().then((code) => process.exit(code))
