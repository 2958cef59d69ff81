-- one row per project and operation type: what its tasks add up to whatever the latest day, so
-- that marts.failures_by_operate_type, rebuilt when the latest day moves, does not read every
-- task again
with

tasks as (
    select * from intermediate.int_tasks__latest
),

final as (
    select
        project_id,
        coalesce(operate_type, 'UNKNOWN') as operate_type,
        count(*) as failures,
        count(*) filter (where is_open) as open_tasks,
        min(failed_at) as first_failed_at,
        max(failed_at) as last_failed_at,
        percentile_cont(0.5) within group (order by hours_to_clear) as median_hours_to_clear
    from tasks
    group by
        project_id,
        coalesce(operate_type, 'UNKNOWN')
)

select * from final
