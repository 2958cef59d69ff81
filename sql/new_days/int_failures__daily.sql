-- the rows intermediate.int_failures__daily gains when the latest day in the data moves on from
-- $previous_latest_day: every key's series goes on, zero-filled, to the new latest day, and the
-- rolling windows of the new days reach back 13 days into the rows already there
with

recent_days as (
    select * from intermediate.int_failures__daily
    where day > cast($previous_latest_day as date) - 14
),

latest_day as (
    select * from intermediate.int_latest_day
),

-- every series reaches the previous latest day: its row of that day names the key
keys as (
    select
        dimension,
        project_id,
        key
    from recent_days
    where day = cast($previous_latest_day as date)
),

new_days as (
    select
        keys.dimension,
        keys.project_id,
        keys.key,
        cast(spine.day as date) as day,
        0 as failures,
        0 as breadth
    from keys
    cross join latest_day
    cross join generate_series(
        cast($previous_latest_day as date) + 1,
        latest_day.day,
        interval '1 day'
    ) as spine (day)
),

series as (
    select dimension, project_id, key, day, failures, breadth
    from recent_days
    union all
    select dimension, project_id, key, day, failures, breadth
    from new_days
),

windowed as (
    select
        dimension,
        day,
        project_id,
        key,
        failures,
        cast(sum(failures) over last_7_days as bigint) as failures_7d,
        cast(coalesce(sum(failures) over previous_7_days, 0) as bigint) as failures_prev_7d,
        breadth
    from series
    window
        last_7_days as (
            partition by dimension, project_id, key
            order by day
            rows between 6 preceding and current row
        ),
        previous_7_days as (
            partition by dimension, project_id, key
            order by day
            rows between 13 preceding and 7 preceding
        )
),

final as (
    select
        dimension,
        day,
        project_id,
        key,
        cast(failures as bigint) as failures,
        failures_7d,
        failures_prev_7d,
        cast(breadth as bigint) as breadth
    from windowed
    where day > cast($previous_latest_day as date)
)

select * from final
