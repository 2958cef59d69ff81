-- one row per key (a key pair, server or error code), project and UTC day on which the key
-- failed: the days with failures only, from which the zero-filled daily trends and the spikes
-- are made
with

failures as (
    select * from intermediate.int_failures__keyed
),

-- what breadth counts, once per day: two plain groupings run faster than a distinct count
touched_days as (
    select
        dimension,
        project_id,
        key,
        failed_day,
        touched,
        count(*) as failures
    from failures
    group by
        dimension,
        project_id,
        key,
        failed_day,
        touched
),

final as (
    select
        dimension,
        project_id,
        key,
        failed_day as day,
        cast(sum(failures) as bigint) as failures,
        -- a NULL touched counts no server (or key pair), as a distinct count would
        count(touched) as breadth
    from touched_days
    group by
        dimension,
        project_id,
        key,
        failed_day
)

select * from final
