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
-- than by a project id and a key number (and the counts are integers until the windows are done,
-- for the same reason: the windows hold every row)
keys as (
    select
        cast(row_number() over (order by project_id, key_number) as integer) as series,
        project_id,
        key_number,
        dimension,
        key
    from failure_keys
),

-- each day with failures, the failures of the series up to it, and the next day with failures
-- (or the day after the latest day): the days between are the zeros that follow it. A key's
-- first failure is its first day
series_days as (
    select
        keys.series,
        key_days.day,
        cast(key_days.failures as integer) as failures,
        cast(key_days.breadth as integer) as breadth,
        cast(sum(key_days.failures) over by_day as integer) as failures_to_date,
        coalesce(lead(key_days.day) over by_day, latest_day.day + 1) as next_day
    from key_days
    inner join keys
        on keys.dimension = key_days.dimension
        and keys.project_id = key_days.project_id
        and keys.key = key_days.key
    cross join latest_day
    window by_day as (partition by keys.series order by key_days.day)
),

-- every day of every series, each made from the day with failures it follows, so that no join
-- of millions of days is needed to find their failures
filled as (
    select
        series_days.series,
        cast(spine.day as date) as day,
        case when spine.day = series_days.day then series_days.failures else 0 end as failures,
        case when spine.day = series_days.day then series_days.breadth else 0 end as breadth,
        series_days.failures_to_date
    from series_days
    cross join generate_series(
        series_days.day,
        series_days.next_day - 1,
        interval '1 day'
    ) as spine (day)
),

-- the failures to date of 7 and of 14 days before (one row per day: 7 and 14 rows back), from
-- which the rolling windows below are differences. Looking back is much cheaper than summing
-- frames of 7 rows
looked_back as (
    select
        series,
        day,
        failures,
        breadth,
        failures_to_date,
        coalesce(lag(failures_to_date, 7) over by_day, 0) as failures_to_week_before,
        coalesce(lag(failures_to_date, 14) over by_day, 0) as failures_to_two_weeks_before
    from filled
    window by_day as (partition by series order by day)
),

final as (
    select
        keys.project_id,
        keys.key_number,
        looked_back.day,
        cast(looked_back.failures as bigint) as failures,
        cast(
            looked_back.failures_to_date - looked_back.failures_to_week_before as bigint
        ) as failures_7d,
        cast(
            looked_back.failures_to_week_before - looked_back.failures_to_two_weeks_before
            as bigint
        ) as failures_prev_7d,
        cast(looked_back.breadth as bigint) as breadth
    from looked_back
    inner join keys
        on keys.series = looked_back.series
)

select * from final
