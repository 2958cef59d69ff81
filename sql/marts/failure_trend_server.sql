-- one row per UTC day, project and server, zero-filled from the server's first failure to the
-- latest day in the data, so that the rolling windows count days without failures too
with

tasks as (
    select * from marts.fct_failed_tasks
),

servers as (
    select * from marts.dim_servers
),

latest_day as (
    select max(failed_day) as day
    from tasks
),

numbered_servers as (
    select
        -- the days below are numbered by server: windows partitioned by one number run much
        -- faster than by two text ids
        row_number() over (order by project_id, server_id) as server_number,
        project_id,
        server_id,
        server_name,
        first_failed_day
    from servers
),

numbered_daily as (
    select
        numbered_servers.server_number,
        tasks.failed_day as day,
        count(*) as failures,
        count(distinct tasks.keypair_name) as keypairs_involved
    from tasks
    inner join numbered_servers
        on numbered_servers.project_id = tasks.project_id
        -- as in marts.dim_servers, tasks without a server count under UNKNOWN
        and numbered_servers.server_id = coalesce(tasks.server_id, 'UNKNOWN')
    group by
        numbered_servers.server_number,
        tasks.failed_day
),

days as (
    select
        numbered_servers.server_number,
        cast(spine.day as date) as day
    from numbered_servers
    cross join latest_day
    cross join generate_series(
        numbered_servers.first_failed_day,
        latest_day.day,
        interval '1 day'
    ) as spine (day)
),

filled as (
    select
        days.server_number,
        days.day,
        coalesce(numbered_daily.failures, 0) as failures,
        coalesce(numbered_daily.keypairs_involved, 0) as keypairs_involved
    from days
    left join numbered_daily
        on numbered_daily.server_number = days.server_number
        and numbered_daily.day = days.day
),

windowed as (
    select
        server_number,
        day,
        failures,
        -- one row per day, so 7 rows are 7 days
        cast(sum(failures) over last_7_days as bigint) as failures_7d,
        cast(coalesce(sum(failures) over previous_7_days, 0) as bigint) as failures_prev_7d,
        keypairs_involved
    from filled
    window
        last_7_days as (
            partition by server_number
            order by day
            rows between 6 preceding and current row
        ),
        previous_7_days as (
            partition by server_number
            order by day
            rows between 13 preceding and 7 preceding
        )
),

final as (
    select
        windowed.day,
        numbered_servers.project_id,
        numbered_servers.server_id,
        numbered_servers.server_name,
        windowed.failures,
        windowed.failures_7d,
        windowed.failures_prev_7d,
        windowed.keypairs_involved
    from windowed
    inner join numbered_servers
        on numbered_servers.server_number = windowed.server_number
)

select * from final
