create table orders (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null default core.current_org_id(),
  channel text not null,
  external_id text not null,
  status text not null check (status in ('PLACED', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
  customer_name text not null,
  customer_phone text not null,
  customer_email text,
  currency text not null check (currency ~ '^[A-Z]{3}$'),
  -- In minor units of the currency, computed from the items.
  total bigint not null check (total >= 0),
  item_count integer not null check (item_count > 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (org_id, channel, external_id)
);
-- Each list filter with each sort; the id breaks ties so keyset pages are stable. Btree
-- indexes serve both directions.
create index orders_created_idx on orders (org_id, created_at, id);
create index orders_status_created_idx on orders (org_id, status, created_at, id);
create index orders_channel_created_idx on orders (org_id, channel, created_at, id);
create index orders_total_idx on orders (org_id, total, id);
create index orders_status_total_idx on orders (org_id, status, total, id);
create index orders_channel_total_idx on orders (org_id, channel, total, id);
select core.enable_tenant_rls('orders');

-- Free-text search: the lower-cased words of the customer's name and email, the external id
-- and the skus, one row each; a query word matches the words it starts. Not a trigram index
-- on the order: under row-level security PostgreSQL applies no index to LIKE (its operator is
-- not leakproof), whereas these prefix ranges are plain comparisons it may use. The planner
-- picks an index per query: by term for a rare word, by order (probing each order in list
-- order) for a common one.
create table order_search_terms (
  org_id uuid not null default core.current_org_id(),
  term text collate "C" not null,
  order_id uuid not null references orders (id),
  primary key (org_id, term, order_id)
);
create index order_search_terms_order_idx on order_search_terms (org_id, order_id, term);
select core.enable_tenant_rls('order_search_terms');

create table order_items (
  org_id uuid not null default core.current_org_id(),
  order_id uuid not null references orders (id),
  line integer not null,
  sku text not null,
  name text not null,
  quantity integer not null check (quantity > 0),
  -- Unit price in minor units.
  price bigint not null check (price >= 0),
  primary key (order_id, line)
);
create index order_items_sku_idx on order_items (org_id, sku);
select core.enable_tenant_rls('order_items');

create table status_history (
  id bigserial primary key,
  org_id uuid not null default core.current_org_id(),
  order_id uuid not null references orders (id),
  from_status text,
  to_status text not null,
  actor_kind text not null,
  actor_id text not null,
  note text,
  at timestamptz not null default now()
);
create index status_history_order_idx on status_history (order_id, id);
select core.enable_tenant_rls('status_history');

-- One row per configured channel: where its import stands and its circuit breaker.
create table channel_sync (
  org_id uuid not null default core.current_org_id(),
  channel text not null,
  cursor text,
  breaker text not null default 'closed' check (breaker in ('closed', 'open', 'half_open')),
  -- Failed runs in a row (each after its own retries); the breaker opens at the threshold.
  consecutive_failures integer not null default 0,
  opened_at timestamptz,
  last_error text,
  last_run_at timestamptz,
  last_success_at timestamptz,
  imported integer not null default 0,
  primary key (org_id, channel)
);
select core.enable_tenant_rls('channel_sync');

-- Orders a channel sent that could not be placed (no stock, unknown sku, invalid): kept with
-- the reason, so an import never loses an order silently. A later import of the same order
-- tries again and clears the row when it succeeds.
create table channel_rejections (
  id bigserial primary key,
  org_id uuid not null default core.current_org_id(),
  channel text not null,
  external_id text not null,
  reason text not null,
  payload jsonb not null,
  attempts integer not null default 1,
  first_seen_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  unique (org_id, channel, external_id)
);
select core.enable_tenant_rls('channel_rejections');
