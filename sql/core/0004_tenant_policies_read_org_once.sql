-- Tenant policies read the org once per statement instead of once per row.
--
-- `core.current_org_id()` is a stable SQL function, so the planner inlines it: in an index
-- condition it is computed once per scan, but the policies' quals are also a filter on every
-- row the scan returns, where `current_setting` is looked up and its text parsed as a uuid
-- again, for each of the two policies. Wrapped in a scalar subquery it becomes an initplan,
-- computed once per statement and compared as a parameter. Measured on a 50-row orders page
-- under row-level security (pgbench, one client): 0.43 ms per statement before, 0.32 after;
-- the same query without row-level security took 0.22-0.31 ms.

create or replace function enable_tenant_rls(target regclass) returns void
language plpgsql
as $$
begin
  execute format('alter table %s enable row level security', target);
  execute format('alter table %s force row level security', target);
  execute format(
    'create policy tenant_isolation on %s using (org_id = (select core.current_org_id())) '
    'with check (org_id = (select core.current_org_id()))',
    target
  );
  execute format(
    'create policy platform_access on %s using ((select core.current_org_id()) is null and current_user <> ''trellis_app'') '
    'with check ((select core.current_org_id()) is null and current_user <> ''trellis_app'')',
    target
  );
end
$$;

-- The policies made before: every table's tenant_isolation and platform_access policy, which
-- enable_tenant_rls (and identity, for orgs and users) created with the same expressions.
-- The expressions are compared as PostgreSQL prints them, without the schema it leaves out
-- when core is on the search path (as it is while core migrates).
do $$
declare
  policy record;
begin
  for policy in
    select schemaname, tablename, policyname from pg_policies
     where policyname in ('tenant_isolation', 'platform_access')
       and replace(qual, 'core.current_org_id()', 'current_org_id()') in (
             '(org_id = current_org_id())',
             '((current_org_id() IS NULL) AND (CURRENT_USER <> ''trellis_app''::name))')
  loop
    if policy.policyname = 'tenant_isolation' then
      execute format(
        'alter policy tenant_isolation on %I.%I using (org_id = (select core.current_org_id())) '
        'with check (org_id = (select core.current_org_id()))',
        policy.schemaname, policy.tablename
      );
    else
      execute format(
        'alter policy platform_access on %I.%I using ((select core.current_org_id()) is null and current_user <> ''trellis_app'') '
        'with check ((select core.current_org_id()) is null and current_user <> ''trellis_app'')',
        policy.schemaname, policy.tablename
      );
    end if;
  end loop;
end
$$;
