-- one row per project with tasks: what its tasks add up to whatever the latest day, so that
-- marts.dim_projects, rebuilt by every run (every run adds runs), does not read the tasks
with

tasks as (
    select * from intermediate.int_tasks__latest
),

final as (
    select
        project_id,
        min(region) as region,
        count(*) as tasks_ever,
        count(*) filter (where is_open) as open_tasks,
        count(*) filter (where not is_open) as cleared_tasks,
        max(failed_at) as last_failed_at,
        percentile_cont(0.5) within group (order by hours_to_clear) as median_hours_to_clear
    from tasks
    group by project_id
)

select * from final
