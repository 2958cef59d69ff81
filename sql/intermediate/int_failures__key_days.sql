-- one row per key (a key pair, server or error code), project and UTC day on which the key
-- failed: the days with failures only, from which the zero-filled daily trends and the spikes
-- are made
with

failures as (
    select * from intermediate.int_failures__keyed
),

final as (
    select
        dimension,
        project_id,
        key,
        failed_day as day,
        count(*) as failures,
        count(distinct touched) as breadth
    from failures
    group by
        dimension,
        project_id,
        key,
        failed_day
)

select * from final
