-- one row: the latest UTC day on which any task failed, across all projects; the trend tables
-- run up to it and the "last N days" windows end on it
with

tasks as (
    select * from intermediate.int_tasks__latest
),

final as (
    select max(failed_day) as day
    from tasks
)

select * from final
