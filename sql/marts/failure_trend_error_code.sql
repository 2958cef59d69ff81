-- one row per UTC day, project and error code, zero-filled from the code's first failure to the
-- latest day in the data, so that the rolling windows count days without failures too
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
        error_code,
        failed_day as day,
        count(*) as failures,
        count(distinct server_id) as servers_affected
    from tasks
    group by
        project_id,
        error_code,
        failed_day
),

error_codes as (
    select
        -- the days below are numbered by error code: windows partitioned by one number run much
        -- faster than by two text ids
        row_number() over (order by project_id, error_code) as error_code_number,
        project_id,
        error_code,
        min(day) as first_day
    from daily
    group by
        project_id,
        error_code
),

numbered_daily as (
    select
        error_codes.error_code_number,
        daily.day,
        daily.failures,
        daily.servers_affected
    from daily
    inner join error_codes
        on error_codes.project_id = daily.project_id
        and error_codes.error_code = daily.error_code
),

days as (
    select
        error_codes.error_code_number,
        cast(spine.day as date) as day
    from error_codes
    cross join latest_day
    cross join generate_series(
        error_codes.first_day,
        latest_day.day,
        interval '1 day'
    ) as spine (day)
),

filled as (
    select
        days.error_code_number,
        days.day,
        coalesce(numbered_daily.failures, 0) as failures,
        coalesce(numbered_daily.servers_affected, 0) as servers_affected
    from days
    left join numbered_daily
        on numbered_daily.error_code_number = days.error_code_number
        and numbered_daily.day = days.day
),

windowed as (
    select
        error_code_number,
        day,
        failures,
        -- one row per day, so 7 rows are 7 days
        cast(sum(failures) over last_7_days as bigint) as failures_7d,
        cast(coalesce(sum(failures) over previous_7_days, 0) as bigint) as failures_prev_7d,
        servers_affected
    from filled
    window
        last_7_days as (
            partition by error_code_number
            order by day
            rows between 6 preceding and current row
        ),
        previous_7_days as (
            partition by error_code_number
            order by day
            rows between 13 preceding and 7 preceding
        )
),

final as (
    select
        windowed.day,
        error_codes.project_id,
        error_codes.error_code,
        windowed.failures,
        windowed.failures_7d,
        windowed.failures_prev_7d,
        windowed.servers_affected
    from windowed
    inner join error_codes
        on error_codes.error_code_number = windowed.error_code_number
)

select * from final
