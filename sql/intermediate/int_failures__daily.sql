-- one row per UTC day, project and key (a key pair, server or error code), zero-filled from the
-- key's first failure to the latest day in the data, so that the rolling windows count days
-- without failures too; the daily trend marts are this table, one dimension each
with

key_days as (
    select * from intermediate.int_failures__key_days
),

failure_keys as (
    select * from intermediate.int_failures__keys
),

latest_day as (
    select * from intermediate.int_latest_day
),

-- the days below are numbered by key: windows partitioned by one number run much faster than
-- by three text ids
keys as (
    select
        row_number() over (order by dimension, project_id, key) as key_number,
        dimension,
        project_id,
        key,
        first_day
    from failure_keys
),

numbered_key_days as (
    select
        keys.key_number,
        key_days.day,
        key_days.failures,
        key_days.breadth
    from key_days
    inner join keys
        on keys.dimension = key_days.dimension
        and keys.project_id = key_days.project_id
        and keys.key = key_days.key
),

days as (
    select
        keys.key_number,
        cast(spine.day as date) as day
    from keys
    cross join latest_day
    cross join generate_series(
        keys.first_day,
        latest_day.day,
        interval '1 day'
    ) as spine (day)
),

filled as (
    select
        days.key_number,
        days.day,
        coalesce(numbered_key_days.failures, 0) as failures,
        coalesce(numbered_key_days.breadth, 0) as breadth
    from days
    left join numbered_key_days
        on numbered_key_days.key_number = days.key_number
        and numbered_key_days.day = days.day
),

windowed as (
    select
        key_number,
        day,
        failures,
        -- one row per day, so 7 rows are 7 days
        cast(sum(failures) over last_7_days as bigint) as failures_7d,
        cast(coalesce(sum(failures) over previous_7_days, 0) as bigint) as failures_prev_7d,
        breadth
    from filled
    window
        last_7_days as (
            partition by key_number
            order by day
            rows between 6 preceding and current row
        ),
        previous_7_days as (
            partition by key_number
            order by day
            rows between 13 preceding and 7 preceding
        )
),

final as (
    select
        keys.dimension,
        windowed.day,
        keys.project_id,
        keys.key,
        windowed.failures,
        windowed.failures_7d,
        windowed.failures_prev_7d,
        windowed.breadth
    from windowed
    inner join keys
        on keys.key_number = windowed.key_number
)

select * from final
