-- the rows intermediate.int_failures__series gains when the latest day in the data moves on from
-- $previous_latest_day: every key's series goes on, zero-filled, to the new latest day. The
-- rolling windows of a new day reach back 13 days; only the days with failures add to them, so
-- they are summed from the sparse key days, not from the zero-filled rows already there
with

keys as (
    select * from intermediate.int_failures__keys
),

recent_key_days as (
    select * from intermediate.int_failures__key_days
    where day > cast($previous_latest_day as date) - 13
),

latest_day as (
    select * from intermediate.int_latest_day
),

new_days as (
    select
        keys.dimension,
        keys.project_id,
        keys.key,
        keys.key_number,
        cast(spine.day as date) as day
    from keys
    cross join latest_day
    cross join generate_series(
        -- a key that first failed on a new day starts there
        greatest(keys.first_day, cast($previous_latest_day as date) + 1),
        latest_day.day,
        interval '1 day'
    ) as spine (day)
),

final as (
    select
        new_days.project_id,
        new_days.key_number,
        new_days.day,
        cast(coalesce(sum(recent_key_days.failures) filter (
            where recent_key_days.day = new_days.day
        ), 0) as bigint) as failures,
        -- the 7 days ending on day, and the 7 before those
        cast(coalesce(sum(recent_key_days.failures) filter (
            where recent_key_days.day > new_days.day - 7
        ), 0) as bigint) as failures_7d,
        cast(coalesce(sum(recent_key_days.failures) filter (
            where recent_key_days.day <= new_days.day - 7
        ), 0) as bigint) as failures_prev_7d,
        cast(coalesce(max(recent_key_days.breadth) filter (
            where recent_key_days.day = new_days.day
        ), 0) as bigint) as breadth
    from new_days
    left join recent_key_days
        on recent_key_days.dimension = new_days.dimension
        and recent_key_days.project_id = new_days.project_id
        and recent_key_days.key = new_days.key
        and recent_key_days.day > new_days.day - 14
        and recent_key_days.day <= new_days.day
    group by
        new_days.project_id,
        new_days.key_number,
        new_days.day
)

select * from final
