import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const SEED_CHANNELS = ["website", "amazon", "blinkit"] as const
const SEED_STATUSES = ["PLACED", "CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED"] as const
export const SEED_SKUS = 50

/**
 * Inserts `count` orders of the current tenant in two set-based statements (run it in a tenant
 * transaction). Order i: channel i % 3, status (i / 3) % 5, total ((i * 37) % 1000) * 10 (so
 * totals tie often), one item of sku `P<i % 50>X`; orders 2k and 2k+1 share a creation time,
 * one second apart per pair going back from `newest`, so ties on created_at are common too.
 */
export const seedOrders = (count: number, newest: Date, prefix = "SEED") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`
      with o as (
        insert into orders.orders
          (channel, external_id, status, customer_name, customer_phone, customer_email, currency, total, item_count,
           created_at, updated_at)
        select (${[...SEED_CHANNELS]}::text[])[1 + i % 3],
               ${prefix} || '-' || i,
               (${[...SEED_STATUSES]}::text[])[1 + (i / 3) % 5],
               'Customer ' || i,
               '+1 555 ' || lpad(i::text, 7, '0'),
               'c' || i || '@example.com',
               'USD',
               ((i * 37) % 1000) * 10,
               1,
               ${newest}::timestamptz - make_interval(secs => i / 2),
               ${newest}::timestamptz - make_interval(secs => i / 2)
          from generate_series(1, ${count}::int) as i
        returning id, external_id, customer_name, customer_email, total, split_part(external_id, '-', 2)::int % ${SEED_SKUS} as sku
      ), items as (
        insert into orders.order_items (order_id, line, sku, name, quantity, price)
        select id, 1, 'P' || sku || 'X', 'Seeded item', 1, total from o
      )
      -- The words the orders plugin stores for search (its tokenizer splits the same way for ASCII).
      insert into orders.order_search_terms (order_id, term)
      select distinct o.id, t.term
        from o, regexp_split_to_table(lower(o.customer_name || ' ' || o.customer_email || ' ' || o.external_id || ' p' || o.sku || 'x'),
                                      '[^[:alnum:]]+') as t(term)
       where t.term <> ''`
  )
