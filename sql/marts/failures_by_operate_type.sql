-- one row per project and operation type (reset, replace, unbind, ...): which kind of key pair
-- operation fails, and how quickly its failures are cleared
with

tasks as (
    select * from intermediate.int_tasks__latest
),

latest_day as (
    select * from intermediate.int_latest_day
),

final as (
    select
        tasks.project_id,
        coalesce(tasks.operate_type, 'UNKNOWN') as operate_type,
        count(*) as failures,
        count(*) filter (where tasks.is_open) as open_tasks,
        count(*) filter (where tasks.failed_day > latest_day.day - 7) as failures_last_7d,
        count(*) filter (where tasks.failed_day > latest_day.day - 30) as failures_last_30d,
        min(tasks.failed_at) as first_failed_at,
        max(tasks.failed_at) as last_failed_at,
        percentile_cont(0.5) within group (order by tasks.hours_to_clear) as median_hours_to_clear
    from tasks
    cross join latest_day
    group by
        tasks.project_id,
        coalesce(tasks.operate_type, 'UNKNOWN')
)

select * from final
