-- one row per validity interval the tasks of a project share: from the run that first saw a
-- task's latest version to the run that found it gone (open while NULL); tasks listed and
-- cleared by the same runs share one, so there are about as many as runs, not as tasks
with

tasks as (
    select * from intermediate.int_tasks__latest
),

final as (
    select distinct
        project_id,
        valid_from,
        cleared_at as valid_to
    from tasks
)

select * from final
