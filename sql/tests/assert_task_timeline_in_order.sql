-- a task is first seen before (or when) it is last seen, and last seen before it is cleared
select
    project_id,
    task_id,
    first_seen_at,
    last_seen_at,
    cleared_at
from marts.fct_failed_tasks
where last_seen_at < first_seen_at
    or cleared_at <= last_seen_at
    or cleared_at < first_seen_at
