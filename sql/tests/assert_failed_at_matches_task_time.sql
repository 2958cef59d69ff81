-- local: project_id
-- failed_at is the loader's reading of task_time (epoch milliseconds); a difference means a
-- conversion bug, and every day in the marts would be off
select
    project_id,
    task_id,
    task_time,
    failed_at
from kps_raw.failed_tasks
-- epoch milliseconds spelled so that PostgreSQL reads it too (DuckDB's epoch_ms is its own)
where cast(cast(extract(epoch from failed_at) * 1000 as bigint) as varchar)
    is distinct from trim(task_time)
