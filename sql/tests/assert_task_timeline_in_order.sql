-- local: project_id
-- a task is first seen before (or when) its latest version is, and cleared after it: with
-- last_seen_at within the version's interval (assert_last_seen_within_its_interval), every row
-- of marts.fct_failed_tasks is first seen, last seen and cleared in that order
select
    project_id,
    task_id,
    first_seen_at,
    valid_from,
    cleared_at
from intermediate.int_tasks__latest
where first_seen_at > valid_from
    or cleared_at <= valid_from
