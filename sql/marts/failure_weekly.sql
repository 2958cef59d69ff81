-- one row per ISO week (Monday to Sunday, UTC) and project, zero-filled from the project's first
-- failure to the latest week in the data: the long view of the daily trends
with

weekly as (
    select * from intermediate.int_failures__weekly
),

latest_day as (
    select * from intermediate.int_latest_day
),

project_starts as (
    select
        project_id,
        min(week_start) as first_week
    from weekly
    group by project_id
),

weeks as (
    select
        project_starts.project_id,
        cast(spine.week_start as date) as week_start
    from project_starts
    cross join latest_day
    cross join generate_series(
        project_starts.first_week,
        cast(date_trunc('week', latest_day.day) as date),
        interval '7 days'
    ) as spine (week_start)
),

filled as (
    select
        weeks.week_start,
        weeks.project_id,
        -- the latest week is usually cut short by the end of the data
        cast(least(7, latest_day.day - weeks.week_start + 1) as bigint) as days_in_data,
        coalesce(weekly.failures, 0) as failures,
        coalesce(weekly.keypairs_affected, 0) as keypairs_affected,
        coalesce(weekly.servers_affected, 0) as servers_affected,
        coalesce(weekly.error_codes_seen, 0) as error_codes_seen,
        coalesce(weekly.still_open, 0) as still_open,
        weekly.median_hours_to_clear
    from weeks
    cross join latest_day
    left join weekly
        on weekly.project_id = weeks.project_id
        and weekly.week_start = weeks.week_start
),

final as (
    select
        week_start,
        project_id,
        days_in_data,
        failures,
        coalesce(
            lag(failures) over (partition by project_id order by week_start),
            0
        ) as failures_prev_week,
        keypairs_affected,
        servers_affected,
        error_codes_seen,
        still_open,
        median_hours_to_clear
    from filled
)

select * from final
