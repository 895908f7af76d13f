-- The messages table becomes the delivery queue: a delivery job wakes up per endpoint and
-- claims the endpoint's due messages in batches, instead of one job per attempt.

-- When a delivery run may take the message: now for a new, resent or recovered message, the
-- scheduled retry after a failure, or the end of the lease while a run is sending it (so the
-- claims of a run that died come back by themselves). Null: nothing more to send.
alter table messages add column due_at timestamptz;
-- The next pick-up is a manual attempt (resend, recover): logged as such, and it leaves the
-- schedule where it was.
alter table messages add column manual_attempt boolean not null default false;

update messages set due_at = coalesce(next_attempt_at, now()) where status = 'pending';

-- The claim (an endpoint's due messages, oldest due first) and the sweep (overdue anywhere).
create index messages_endpoint_due_idx on messages (endpoint_id, due_at) where due_at is not null;
