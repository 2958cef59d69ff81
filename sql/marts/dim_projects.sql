-- one row per project the warehouse knows, from its runs or its tasks: how its runs went and
-- how many failed tasks it has, so that a project without failures shows as such
with

runs as (
    select * from staging.stg_kps__runs
),

per_project as (
    select * from intermediate.int_tasks__per_project
),

operate_types as (
    select * from marts.failures_by_operate_type
),

projects as (
    select project_id from runs
    union
    select project_id from per_project
),

ranked_runs as (
    select
        project_id,
        region,
        status,
        row_number() over (partition by project_id order by started_at desc, run_id desc) as recency
    from runs
),

last_runs as (
    select
        project_id,
        region,
        status
    from ranked_runs
    where recency = 1
),

run_summary as (
    select
        project_id,
        count(*) as runs,
        count(*) filter (where is_ok) as ok_runs,
        count(*) filter (where status = 'failed') as failed_runs,
        min(started_at) as first_run_at,
        max(started_at) as last_run_at,
        max(started_at) filter (where is_ok) as last_ok_run_at,
        max(started_at) filter (where is_ok and is_complete) as last_complete_run_at
    from runs
    group by project_id
),

-- the windows that end on the latest day: only the last 30 days' tasks are counted
-- the windows that end on the latest day, as failures_by_operate_type counts them: every run
-- rebuilds this table, and that one only when the tasks or the latest day change
recent as (
    select
        project_id,
        cast(sum(failures_last_7d) as bigint) as failures_last_7d,
        cast(sum(failures_last_30d) as bigint) as failures_last_30d
    from operate_types
    group by project_id
),

final as (
    select
        projects.project_id,
        coalesce(last_runs.region, per_project.region) as region,
        coalesce(run_summary.runs, 0) as runs,
        coalesce(run_summary.ok_runs, 0) as ok_runs,
        coalesce(run_summary.failed_runs, 0) as failed_runs,
        run_summary.first_run_at,
        run_summary.last_run_at,
        last_runs.status as last_run_status,
        run_summary.last_ok_run_at,
        run_summary.last_complete_run_at,
        coalesce(per_project.tasks_ever, 0) as tasks_ever,
        coalesce(per_project.open_tasks, 0) as open_tasks,
        coalesce(per_project.cleared_tasks, 0) as cleared_tasks,
        coalesce(recent.failures_last_7d, 0) as failures_last_7d,
        coalesce(recent.failures_last_30d, 0) as failures_last_30d,
        per_project.last_failed_at,
        per_project.median_hours_to_clear
    from projects
    left join run_summary
        on run_summary.project_id = projects.project_id
    left join last_runs
        on last_runs.project_id = projects.project_id
    left join per_project
        on per_project.project_id = projects.project_id
    left join recent
        on recent.project_id = projects.project_id
)

select * from final
