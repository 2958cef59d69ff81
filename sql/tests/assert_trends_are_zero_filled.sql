-- local: project_id
-- every key of a daily trend has one row per day from its first day to the latest day in the
-- data, with no gaps: the rolling 7-day windows count rows, so a gap would stretch them. The
-- trend marts are int_failures__series with its keys named, one dimension each
with

series as (
    select * from intermediate.int_failures__series
),

latest_day as (
    select * from intermediate.int_latest_day
),

spans as (
    select
        project_id,
        key_number,
        min(day) as first_day,
        max(day) as last_day,
        count(*) as days
    from series
    group by
        project_id,
        key_number
),

final as (
    select
        spans.project_id,
        spans.key_number,
        spans.first_day,
        spans.last_day,
        spans.days,
        latest_day.day as latest_day
    from spans
    cross join latest_day
    where spans.last_day <> latest_day.day
        or spans.days <> spans.last_day - spans.first_day + 1
)

select * from final
