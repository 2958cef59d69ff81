-- one row per validity interval of a project's tasks, with the start of the last successful run
-- within it: when the warehouse last saw the tasks of that interval. Every run moves it, so it
-- is a view of the intervals and the runs, both small, and no table of every task is rewritten
with

intervals as (
    select * from intermediate.int_tasks__intervals
),

runs as (
    select * from staging.stg_kps__runs
),

final as (
    select
        intervals.project_id,
        intervals.valid_from,
        intervals.valid_to,
        max(runs.started_at) as last_seen_at
    from intervals
    inner join runs
        on runs.project_id = intervals.project_id
        and runs.started_at >= intervals.valid_from
        and (intervals.valid_to is null or runs.started_at < intervals.valid_to)
    where runs.is_ok
    group by
        intervals.project_id,
        intervals.valid_from,
        intervals.valid_to
)

select * from final
