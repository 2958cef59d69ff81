-- the warehouse last saw the tasks of a validity interval within it: at or after the run that
-- first saw them, and before the run that found them gone
select
    project_id,
    valid_from,
    valid_to,
    last_seen_at
from intermediate.int_tasks__last_seen
where last_seen_at < valid_from
    or last_seen_at >= valid_to
