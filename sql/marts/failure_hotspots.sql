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
    select
        failures.dimension,
        failures.project_id,
        failures.key,
        latest_day.day - failures.failed_day as days_ago,
        failures.is_open,
        failures.hours_to_clear
    from failures
    cross join latest_day
    where failures.failed_day > latest_day.day - 60
),

-- both periods in one pass over the failures; a period is days_ago < its length
by_key as (
    select
        dimension,
        project_id,
        key,
        count(*) filter (where days_ago < 7) as failures_7,
        count(*) filter (where days_ago >= 7 and days_ago < 14) as failures_prev_7,
        count(*) filter (where days_ago < 7 and is_open) as open_tasks_7,
        percentile_cont(0.5) within group (
            order by case when days_ago < 7 then hours_to_clear end
        ) as median_hours_to_clear_7,
        count(*) filter (where days_ago < 30) as failures_30,
        count(*) filter (where days_ago >= 30) as failures_prev_30,
        count(*) filter (where days_ago < 30 and is_open) as open_tasks_30,
        percentile_cont(0.5) within group (
            order by case when days_ago < 30 then hours_to_clear end
        ) as median_hours_to_clear_30
    from recent_failures
    group by
        dimension,
        project_id,
        key
),

periods as (
    select 7 as window_days
    union all
    select 30 as window_days
),

-- one row per key and period; by_key is read once, so that a filter on the project reaches
-- the failures it is made of (a CTE read twice is computed whole first)
summarised as (
    select
        by_key.dimension,
        by_key.project_id,
        by_key.key,
        periods.window_days,
        case when periods.window_days = 7 then by_key.failures_7 else by_key.failures_30 end
        as failures,
        case
            when periods.window_days = 7 then by_key.failures_prev_7
            else by_key.failures_prev_30
        end as failures_prev,
        case when periods.window_days = 7 then by_key.open_tasks_7 else by_key.open_tasks_30 end
        as open_tasks,
        case
            when periods.window_days = 7 then by_key.median_hours_to_clear_7
            else by_key.median_hours_to_clear_30
        end as median_hours_to_clear
    from by_key
    cross join periods
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
