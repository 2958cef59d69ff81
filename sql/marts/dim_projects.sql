-- one row per project the warehouse knows, from its runs or its tasks: how its runs went and
-- how many failed tasks it has, so that a project without failures shows as such
with

runs as (
    select * from staging.stg_kps__runs
),

tasks as (
    select * from intermediate.int_tasks__latest
),

latest_day as (
    select * from intermediate.int_latest_day
),

projects as (
    select project_id from runs
    union
    select project_id from tasks
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

task_summary as (
    select
        tasks.project_id,
        min(tasks.region) as region,
        count(*) as tasks_ever,
        count(*) filter (where tasks.is_open) as open_tasks,
        count(*) filter (where not tasks.is_open) as cleared_tasks,
        count(*) filter (where tasks.failed_day > latest_day.day - 7) as failures_last_7d,
        count(*) filter (where tasks.failed_day > latest_day.day - 30) as failures_last_30d,
        max(tasks.failed_at) as last_failed_at,
        percentile_cont(0.5) within group (order by tasks.hours_to_clear) as median_hours_to_clear
    from tasks
    cross join latest_day
    group by tasks.project_id
),

final as (
    select
        projects.project_id,
        coalesce(last_runs.region, task_summary.region) as region,
        coalesce(run_summary.runs, 0) as runs,
        coalesce(run_summary.ok_runs, 0) as ok_runs,
        coalesce(run_summary.failed_runs, 0) as failed_runs,
        run_summary.first_run_at,
        run_summary.last_run_at,
        last_runs.status as last_run_status,
        run_summary.last_ok_run_at,
        run_summary.last_complete_run_at,
        coalesce(task_summary.tasks_ever, 0) as tasks_ever,
        coalesce(task_summary.open_tasks, 0) as open_tasks,
        coalesce(task_summary.cleared_tasks, 0) as cleared_tasks,
        coalesce(task_summary.failures_last_7d, 0) as failures_last_7d,
        coalesce(task_summary.failures_last_30d, 0) as failures_last_30d,
        task_summary.last_failed_at,
        task_summary.median_hours_to_clear
    from projects
    left join run_summary
        on run_summary.project_id = projects.project_id
    left join last_runs
        on last_runs.project_id = projects.project_id
    left join task_summary
        on task_summary.project_id = projects.project_id
)

select * from final
