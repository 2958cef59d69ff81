-- one row per key (a key pair, server or error code) and project that ever failed, with the day
-- of its first failure, where its zero-filled daily trend starts, and its number in the project
with

key_days as (
    select * from intermediate.int_failures__key_days
),

firsts as (
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
),

final as (
    select
        dimension,
        project_id,
        key,
        -- int_failures__series names its keys by this number: its millions of rows are written
        -- and windowed far faster with one integer than with two text columns. Numbered within
        -- the project, the keys get the same numbers from an incremental build, which builds a
        -- changed project's keys again, as from a full one
        row_number() over (partition by project_id order by dimension, key) as key_number,
        first_day
    from firsts
)

select * from final
