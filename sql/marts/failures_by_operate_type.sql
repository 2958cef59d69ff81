-- one row per project and operation type (reset, replace, unbind, ...): which kind of key pair
-- operation fails, and how quickly its failures are cleared
with

per_operate_type as (
    select * from intermediate.int_tasks__per_operate_type
),

tasks as (
    select * from intermediate.int_tasks__latest
),

latest_day as (
    select * from intermediate.int_latest_day
),

-- the windows that end on the latest day: only the last 30 days' tasks are counted
recent as (
    select
        tasks.project_id,
        coalesce(tasks.operate_type, 'UNKNOWN') as operate_type,
        count(*) filter (where tasks.failed_day > latest_day.day - 7) as failures_last_7d,
        count(*) as failures_last_30d
    from tasks
    cross join latest_day
    where tasks.failed_day > latest_day.day - 30
    group by
        tasks.project_id,
        coalesce(tasks.operate_type, 'UNKNOWN')
),

final as (
    select
        per_operate_type.project_id,
        per_operate_type.operate_type,
        per_operate_type.failures,
        per_operate_type.open_tasks,
        coalesce(recent.failures_last_7d, 0) as failures_last_7d,
        coalesce(recent.failures_last_30d, 0) as failures_last_30d,
        per_operate_type.first_failed_at,
        per_operate_type.last_failed_at,
        per_operate_type.median_hours_to_clear
    from per_operate_type
    left join recent
        on recent.project_id = per_operate_type.project_id
        and recent.operate_type = per_operate_type.operate_type
)

select * from final
