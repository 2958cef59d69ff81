-- one row per task ever seen in a project: what the API said about it last, when the warehouse
-- first and last saw it, and when it left the API's list
with

tasks as (
    select * from intermediate.int_tasks__latest
),

runs as (
    select * from staging.stg_kps__runs
),

-- tasks share few validity intervals (each starts and ends at a run), so runs are matched to
-- the distinct intervals rather than to every task
validity_intervals as (
    select distinct
        project_id,
        valid_from,
        cleared_at as valid_to
    from tasks
),

last_seen as (
    select
        validity_intervals.project_id,
        validity_intervals.valid_from,
        validity_intervals.valid_to,
        max(runs.started_at) as last_seen_at
    from validity_intervals
    inner join runs
        on runs.project_id = validity_intervals.project_id
        and runs.started_at >= validity_intervals.valid_from
        and (validity_intervals.valid_to is null or runs.started_at < validity_intervals.valid_to)
    where runs.is_ok
    group by
        validity_intervals.project_id,
        validity_intervals.valid_from,
        validity_intervals.valid_to
),

final as (
    select
        tasks.project_id,
        tasks.region,
        tasks.task_id,
        tasks.failed_at,
        tasks.failed_day,
        tasks.operate_type,
        tasks.error_code,
        tasks.error_msg,
        tasks.server_id,
        tasks.server_name,
        tasks.keypair_name,
        tasks.extra_fields,
        tasks.first_seen_at,
        last_seen.last_seen_at,
        tasks.cleared_at,
        tasks.is_open,
        tasks.hours_to_clear,
        tasks.version_count,
        tasks.times_cleared
    from tasks
    left join last_seen
        on last_seen.project_id = tasks.project_id
        and last_seen.valid_from = tasks.valid_from
        and last_seen.valid_to is not distinct from tasks.cleared_at
)

select * from final
