-- graphile-worker enables row-level security on its private tables with no policies, so the
-- grants of 0002 alone still let trellis_app see and add no job: tenant work (a request, a job)
-- must enqueue and publish in its own transaction.
create policy trellis_app_enqueue on graphile_worker._private_tasks to trellis_app using (true) with check (true);
create policy trellis_app_enqueue on graphile_worker._private_job_queues to trellis_app using (true) with check (true);
create policy trellis_app_enqueue on graphile_worker._private_jobs to trellis_app using (true) with check (true);
