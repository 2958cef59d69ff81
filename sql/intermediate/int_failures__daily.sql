-- one row per UTC day, project and key (a key pair, server or error code), zero-filled from the
-- key's first failure to the latest day in the data, so that the rolling windows count days
-- without failures too; the daily trend marts are this table, one dimension each
with

tasks as (
    select * from intermediate.int_tasks__latest
),

latest_day as (
    select max(failed_day) as day
    from tasks
),

-- every failure under each of its keys, with what its breadth counts: the servers a key pair's
-- or an error code's failures touch, the key pairs a server's failures involve; a task that names
-- no key pair or server is still a failure, so it counts under one visible name (as in
-- marts.dim_servers)
tasks_by_key as (
    select
        'keypair' as dimension,
        project_id,
        coalesce(keypair_name, 'UNKNOWN') as key,
        failed_day,
        server_id as touched
    from tasks
    union all
    select
        'server' as dimension,
        project_id,
        coalesce(server_id, 'UNKNOWN') as key,
        failed_day,
        keypair_name as touched
    from tasks
    union all
    select
        'error_code' as dimension,
        project_id,
        error_code as key,
        failed_day,
        server_id as touched
    from tasks
),

daily as (
    select
        dimension,
        project_id,
        key,
        failed_day as day,
        count(*) as failures,
        count(distinct touched) as breadth
    from tasks_by_key
    group by
        dimension,
        project_id,
        key,
        failed_day
),

keys as (
    select
        -- the days below are numbered by key: windows partitioned by one number run much
        -- faster than by three text ids
        row_number() over (order by dimension, project_id, key) as key_number,
        dimension,
        project_id,
        key,
        min(day) as first_day
    from daily
    group by
        dimension,
        project_id,
        key
),

numbered_daily as (
    select
        keys.key_number,
        daily.day,
        daily.failures,
        daily.breadth
    from daily
    inner join keys
        on keys.dimension = daily.dimension
        and keys.project_id = daily.project_id
        and keys.key = daily.key
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
        coalesce(numbered_daily.failures, 0) as failures,
        coalesce(numbered_daily.breadth, 0) as breadth
    from days
    left join numbered_daily
        on numbered_daily.key_number = days.key_number
        and numbered_daily.day = days.day
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
