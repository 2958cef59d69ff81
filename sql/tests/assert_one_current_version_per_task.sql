-- local: project_id
-- severity: warn
-- a task has at most one current version; an incomplete pass can leave two for a while (the
-- marts then use the later one), but two that last are worth a look at the loader
select
    project_id,
    task_id,
    count(*) as current_versions
from staging.stg_kps__failed_tasks
where is_current
group by
    project_id,
    task_id
having count(*) > 1
