-- one row per UTC day, project and key (a key pair, server or error code, by its number in
-- int_failures__keys), zero-filled from the key's first failure to the latest day in the data,
-- so that the rolling windows count days without failures too; int_failures__daily names the
-- keys, and the daily trend marts are that view, one dimension each
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

-- one number per series for the windows below: partitioned by one integer they run much faster
-- than by a project id and a key number
keys as (
    select
        row_number() over (order by project_id, key_number) as series,
        project_id,
        key_number,
        dimension,
        key,
        first_day
    from failure_keys
),

series_days as (
    select
        keys.series,
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
        keys.series,
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
        days.series,
        days.day,
        coalesce(series_days.failures, 0) as failures,
        coalesce(series_days.breadth, 0) as breadth
    from days
    left join series_days
        on series_days.series = days.series
        and series_days.day = days.day
),

windowed as (
    select
        series,
        day,
        failures,
        -- one row per day, so 7 rows are 7 days
        cast(sum(failures) over last_7_days as bigint) as failures_7d,
        cast(coalesce(sum(failures) over previous_7_days, 0) as bigint) as failures_prev_7d,
        breadth
    from filled
    window
        last_7_days as (
            partition by series
            order by day
            rows between 6 preceding and current row
        ),
        previous_7_days as (
            partition by series
            order by day
            rows between 13 preceding and 7 preceding
        )
),

final as (
    select
        keys.project_id,
        keys.key_number,
        windowed.day,
        windowed.failures,
        windowed.failures_7d,
        windowed.failures_prev_7d,
        windowed.breadth
    from windowed
    inner join keys
        on keys.series = windowed.series
)

select * from final
