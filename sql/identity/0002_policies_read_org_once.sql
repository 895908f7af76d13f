-- As core's 0004: the org is read once per statement (an initplan), not once per row, in the
-- policies this plugin wrote by hand for orgs and users.
alter policy tenant_read on orgs using (id = (select core.current_org_id()));
alter policy platform_access on orgs
  using ((select core.current_org_id()) is null and current_user <> 'trellis_app')
  with check ((select core.current_org_id()) is null and current_user <> 'trellis_app');
alter policy platform_access on users
  using ((select core.current_org_id()) is null and current_user <> 'trellis_app')
  with check ((select core.current_org_id()) is null and current_user <> 'trellis_app');
