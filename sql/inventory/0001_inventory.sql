create table locations (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null default core.current_org_id(),
  code text not null,
  name text not null,
  created_at timestamptz not null default now(),
  unique (org_id, code)
);
select core.enable_tenant_rls('locations');

-- One row per SKU. on_hand and reserved are the sums of the item's stock rows, kept in the
-- same statements that change those, so lists filter and sort on them without aggregating.
-- Every change to an item's stock first locks its row here (`for update`, in sku order): the
-- item row is the one lock that serialises reservations, adjustments and shipments of it.
create table items (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null default core.current_org_id(),
  sku text not null,
  name text not null,
  unit text not null,
  reorder_threshold integer not null check (reorder_threshold >= 0),
  attributes jsonb not null default '{}',
  on_hand integer not null default 0 check (on_hand >= 0),
  reserved integer not null default 0 check (reserved >= 0 and reserved <= on_hand),
  available integer generated always as (on_hand - reserved) stored,
  -- available < reorder_threshold as of the last change: inventory.low_stock fires when this
  -- turns true, so once per crossing rather than on every change below the threshold.
  low_stock boolean not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  -- Deleted items keep their sku, so a restore can never collide with a newer item.
  unique (org_id, sku)
);
create index items_org_name_idx on items (org_id, name, sku);
create index items_org_available_idx on items (org_id, available, sku);
create index items_org_created_idx on items (org_id, created_at, sku);
create index items_org_low_stock_idx on items (org_id, sku) where low_stock and deleted_at is null;
select core.enable_tenant_rls('items');

-- Free-text search: the lower-cased words of each item's sku and name; a query word matches
-- the words it starts. Not a trigram index: under row-level security PostgreSQL applies no
-- index to LIKE (not leakproof), but it does to these prefix ranges.
create table item_search_terms (
  org_id uuid not null default core.current_org_id(),
  term text collate "C" not null,
  item_id uuid not null references items (id),
  primary key (org_id, term, item_id)
);
create index item_search_terms_item_idx on item_search_terms (org_id, item_id, term);
select core.enable_tenant_rls('item_search_terms');

create table stock (
  org_id uuid not null default core.current_org_id(),
  item_id uuid not null references items (id),
  location_id uuid not null references locations (id),
  on_hand integer not null default 0 check (on_hand >= 0),
  reserved integer not null default 0 check (reserved >= 0 and reserved <= on_hand),
  updated_at timestamptz not null default now(),
  primary key (item_id, location_id)
);
create index stock_location_idx on stock (location_id, item_id);
select core.enable_tenant_rls('stock');

-- Units held for a reference (an order id) at one location. A reference's lines are
-- released (given back) or committed (shipped) together.
create table reservations (
  id bigserial primary key,
  org_id uuid not null default core.current_org_id(),
  reference text not null,
  item_id uuid not null references items (id),
  location_id uuid not null references locations (id),
  quantity integer not null check (quantity > 0),
  status text not null default 'active' check (status in ('active', 'released', 'committed')),
  expires_at timestamptz,
  created_at timestamptz not null default now(),
  closed_at timestamptz
);
create index reservations_reference_idx on reservations (org_id, reference, id);
create index reservations_expiry_idx on reservations (expires_at) where status = 'active' and expires_at is not null;
select core.enable_tenant_rls('reservations');

-- The stock log: every change of on-hand stock, with who, why and the result.
create table adjustments (
  id bigserial primary key,
  org_id uuid not null default core.current_org_id(),
  -- The lines of one request (or one shipment) share a batch id.
  batch_id uuid not null,
  item_id uuid not null references items (id),
  location_id uuid not null references locations (id),
  kind text not null check (kind in ('receive', 'ship', 'correct')),
  quantity integer not null check (quantity <> 0),
  on_hand_after integer not null,
  reason text not null,
  reference text,
  actor_kind text not null,
  actor_id text not null,
  at timestamptz not null default now()
);
create index adjustments_item_idx on adjustments (org_id, item_id, id desc);
create index adjustments_batch_idx on adjustments (org_id, batch_id);
select core.enable_tenant_rls('adjustments');
