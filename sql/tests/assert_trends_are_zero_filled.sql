-- local: project_id
-- every key of a daily trend has one row per day from its first day to the latest day in the
-- data, with no gaps: the rolling 7-day windows count rows, so a gap would stretch them. The
-- trend marts are views of int_failures__daily, one dimension each, with nothing left out
with

daily as (
    select * from intermediate.int_failures__daily
),

latest_day as (
    select * from intermediate.int_latest_day
),

spans as (
    select
        dimension,
        project_id,
        key,
        min(day) as first_day,
        max(day) as last_day,
        count(*) as days
    from daily
    group by
        dimension,
        project_id,
        key
),

final as (
    select
        spans.dimension,
        spans.project_id,
        spans.key,
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
