-- one row per key pair, server or error code that failed in the last 7 or 30 days before the
-- latest day in the data, ranked within its project, compared with the period just before
with

failures as (
    select * from intermediate.int_failures__keyed
),

servers as (
    select * from marts.dim_servers
),

latest_day as (
    select * from intermediate.int_latest_day
),

periods as (
    select 7 as window_days
    union all
    select 30 as window_days
),

-- servers are shown by name; key pairs and error codes are their own labels
server_labels as (
    select
        'server' as dimension,
        project_id,
        server_id as key,
        server_name as key_label
    from servers
),

-- the longest period and the one before it: 60 days
recent_failures as (
    select failures.*
    from failures
    cross join latest_day
    where failures.failed_day > latest_day.day - 60
),

in_periods as (
    select
        recent_failures.dimension,
        recent_failures.project_id,
        recent_failures.key,
        periods.window_days,
        recent_failures.failed_day > latest_day.day - periods.window_days as is_current,
        recent_failures.is_open,
        recent_failures.hours_to_clear
    from recent_failures
    cross join periods
    cross join latest_day
    where recent_failures.failed_day > latest_day.day - 2 * periods.window_days
),

summarised as (
    select
        dimension,
        project_id,
        key,
        window_days,
        count(*) filter (where is_current) as failures,
        count(*) filter (where not is_current) as failures_prev,
        count(*) filter (where is_current and is_open) as open_tasks,
        percentile_cont(0.5) within group (
            order by case when is_current then hours_to_clear end
        ) as median_hours_to_clear
    from in_periods
    group by
        dimension,
        project_id,
        key,
        window_days
),

final as (
    select
        summarised.dimension,
        summarised.window_days,
        summarised.project_id,
        summarised.key,
        coalesce(server_labels.key_label, summarised.key) as key_label,
        row_number() over (
            partition by summarised.dimension, summarised.window_days, summarised.project_id
            order by summarised.failures desc, summarised.key
        ) as rank_in_project,
        summarised.failures,
        summarised.failures_prev,
        summarised.open_tasks,
        -- within 10% of the period before is flat, so that noise does not read as a direction
        case
            when summarised.failures > summarised.failures_prev * 1.1 then 'up'
            when summarised.failures < summarised.failures_prev * 0.9 then 'down'
            else 'flat'
        end as trend,
        summarised.median_hours_to_clear
    from summarised
    left join server_labels
        on server_labels.dimension = summarised.dimension
        and server_labels.project_id = summarised.project_id
        and server_labels.key = summarised.key
    where summarised.failures > 0
)

select * from final
