-- one row per ISO week (Monday to Sunday, UTC) and project with failures: the weeks without
-- have no row, so that a new latest day changes nothing here and marts.failure_weekly zero-fills
-- a small table instead of reading every task again
with

tasks as (
    select * from intermediate.int_tasks__latest
),

tasks_by_week as (
    select
        project_id,
        cast(date_trunc('week', failed_day) as date) as week_start,
        keypair_name,
        server_id,
        error_code,
        is_open,
        hours_to_clear
    from tasks
),

final as (
    select
        project_id,
        week_start,
        count(*) as failures,
        count(distinct keypair_name) as keypairs_affected,
        count(distinct server_id) as servers_affected,
        count(distinct error_code) as error_codes_seen,
        count(*) filter (where is_open) as still_open,
        percentile_cont(0.5) within group (order by hours_to_clear) as median_hours_to_clear
    from tasks_by_week
    group by
        project_id,
        week_start
)

select * from final
