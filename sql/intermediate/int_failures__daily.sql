-- one row per UTC day, project and key (a key pair, server or error code), zero-filled from the
-- key's first failure to the latest day in the data: int_failures__series with its keys named;
-- the daily trend marts are this view, one dimension each
with

series as (
    select * from intermediate.int_failures__series
),

failure_keys as (
    select * from intermediate.int_failures__keys
),

final as (
    select
        failure_keys.dimension,
        series.day,
        series.project_id,
        failure_keys.key,
        series.failures,
        series.failures_7d,
        series.failures_prev_7d,
        series.breadth
    from series
    inner join failure_keys
        on failure_keys.project_id = series.project_id
        and failure_keys.key_number = series.key_number
)

select * from final
