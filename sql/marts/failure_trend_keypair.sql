-- one row per UTC day, project and key pair, zero-filled from the key pair's first failure to
-- the latest day in the data, so that the rolling windows count days without failures too
with

tasks as (
    select * from marts.fct_failed_tasks
),

latest_day as (
    select max(failed_day) as day
    from tasks
),

daily as (
    select
        project_id,
        -- a task that names no key pair is still a failure; it counts under one visible name
        coalesce(keypair_name, 'UNKNOWN') as keypair_name,
        failed_day as day,
        count(*) as failures,
        count(distinct server_id) as servers_affected
    from tasks
    group by
        project_id,
        coalesce(keypair_name, 'UNKNOWN'),
        failed_day
),

keypairs as (
    select
        -- the days below are numbered by key pair: windows partitioned by one number run much
        -- faster than by two text ids
        row_number() over (order by project_id, keypair_name) as keypair_number,
        project_id,
        keypair_name,
        min(day) as first_day
    from daily
    group by
        project_id,
        keypair_name
),

numbered_daily as (
    select
        keypairs.keypair_number,
        daily.day,
        daily.failures,
        daily.servers_affected
    from daily
    inner join keypairs
        on keypairs.project_id = daily.project_id
        and keypairs.keypair_name = daily.keypair_name
),

days as (
    select
        keypairs.keypair_number,
        cast(spine.day as date) as day
    from keypairs
    cross join latest_day
    cross join generate_series(
        keypairs.first_day,
        latest_day.day,
        interval '1 day'
    ) as spine (day)
),

filled as (
    select
        days.keypair_number,
        days.day,
        coalesce(numbered_daily.failures, 0) as failures,
        coalesce(numbered_daily.servers_affected, 0) as servers_affected
    from days
    left join numbered_daily
        on numbered_daily.keypair_number = days.keypair_number
        and numbered_daily.day = days.day
),

windowed as (
    select
        keypair_number,
        day,
        failures,
        -- one row per day, so 7 rows are 7 days
        cast(sum(failures) over last_7_days as bigint) as failures_7d,
        cast(coalesce(sum(failures) over previous_7_days, 0) as bigint) as failures_prev_7d,
        servers_affected
    from filled
    window
        last_7_days as (
            partition by keypair_number
            order by day
            rows between 6 preceding and current row
        ),
        previous_7_days as (
            partition by keypair_number
            order by day
            rows between 13 preceding and 7 preceding
        )
),

final as (
    select
        windowed.day,
        keypairs.project_id,
        keypairs.keypair_name,
        windowed.failures,
        windowed.failures_7d,
        windowed.failures_prev_7d,
        windowed.servers_affected
    from windowed
    inner join keypairs
        on keypairs.keypair_number = windowed.keypair_number
)

select * from final
