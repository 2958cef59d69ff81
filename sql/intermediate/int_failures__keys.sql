-- one row per key (a key pair, server or error code) and project that ever failed, with the day
-- of its first failure, where its zero-filled daily trend starts
with

key_days as (
    select * from intermediate.int_failures__key_days
),

final as (
    select
        dimension,
        project_id,
        key,
        min(day) as first_day
    from key_days
    group by
        dimension,
        project_id,
        key
)

select * from final
