-- one row per day on which a key pair, server or error code failed far more often than over
-- its own previous 28 days
with

-- only the days with failures (key_days has no others): the days without count as zeros in
-- the sums below. Read twice (the candidates, their history), each as it needs it: materialized,
-- every key day would be copied first
daily as not materialized (
    select * from intermediate.int_failures__key_days
),

servers as (
    select * from marts.dim_servers
),

tasks as (
    select * from intermediate.int_tasks__latest
),

thresholds as (
    select
        3.0 as min_z_score,
        -- a handful of failures is noise however quiet the key was before
        5 as min_failures,
        -- a key that never failed has no spread; without a floor its first failure would be
        -- infinitely surprising
        1.0 as stddev_floor,
        -- a baseline of fewer days says little about what is normal
        7 as min_baseline_days
),

project_starts as (
    select
        project_id,
        min(failed_day) as first_day
    from tasks
    group by project_id
),

candidates as (
    select
        daily.dimension,
        daily.project_id,
        daily.key,
        daily.day,
        daily.failures,
        -- the baseline is the 28 days before, or as many of them as the project has data for
        least(28, daily.day - project_starts.first_day) as baseline_days
    from daily
    inner join project_starts
        on project_starts.project_id = daily.project_id
    cross join thresholds
    where daily.failures >= thresholds.min_failures
        and daily.day - project_starts.first_day >= thresholds.min_baseline_days
),

baselines as (
    select
        candidates.dimension,
        candidates.project_id,
        candidates.key,
        candidates.day,
        candidates.failures,
        candidates.baseline_days,
        cast(coalesce(sum(history.failures), 0) as double) / candidates.baseline_days
        as baseline_mean,
        cast(coalesce(sum(history.failures * history.failures), 0) as double)
        / candidates.baseline_days as baseline_mean_square
    from candidates
    left join daily as history
        on history.dimension = candidates.dimension
        and history.project_id = candidates.project_id
        and history.key = candidates.key
        and history.day >= candidates.day - 28
        and history.day < candidates.day
    group by
        candidates.dimension,
        candidates.project_id,
        candidates.key,
        candidates.day,
        candidates.failures,
        candidates.baseline_days
),

spreads as (
    select
        baselines.dimension,
        baselines.project_id,
        baselines.key,
        baselines.day,
        baselines.failures,
        baselines.baseline_days,
        baselines.baseline_mean,
        -- the population standard deviation; rounding can leave the variance a hair below 0
        sqrt(greatest(
            baselines.baseline_mean_square - baselines.baseline_mean * baselines.baseline_mean,
            0
        )) as baseline_stddev
    from baselines
),

scored as (
    select
        spreads.dimension,
        spreads.project_id,
        spreads.key,
        spreads.day,
        spreads.failures,
        spreads.baseline_days,
        spreads.baseline_mean,
        spreads.baseline_stddev,
        (spreads.failures - spreads.baseline_mean)
        / greatest(spreads.baseline_stddev, thresholds.stddev_floor) as z_score
    from spreads
    cross join thresholds
),

final as (
    select
        scored.dimension,
        scored.project_id,
        scored.key,
        -- servers are shown by name; key pairs and error codes are their own labels
        case
            when scored.dimension = 'server' then coalesce(servers.server_name, scored.key)
            else scored.key
        end as key_label,
        scored.day,
        scored.failures,
        scored.baseline_days,
        scored.baseline_mean,
        scored.baseline_stddev,
        scored.z_score
    from scored
    cross join thresholds
    -- joined to the spikes alone, on the key alone (a key pair may share a server's id; the case
    -- above tells them apart), which keeps this an equality join
    left join servers
        on servers.project_id = scored.project_id
        and servers.server_id = scored.key
    where scored.z_score >= thresholds.min_z_score
)

select * from final
