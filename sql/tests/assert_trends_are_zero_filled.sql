-- local: project_id
-- every key of a daily trend has one row per day from its first day to the latest day in the
-- data, with no gaps: the rolling 7-day windows count rows, so a gap would stretch them
with

keypair_trend as (
    select * from marts.failure_trend_keypair
),

server_trend as (
    select * from marts.failure_trend_server
),

error_code_trend as (
    select * from marts.failure_trend_error_code
),

latest_day as (
    select * from intermediate.int_latest_day
),

spans as (
    select
        'failure_trend_keypair' as trend,
        project_id,
        keypair_name as key,
        min(day) as first_day,
        max(day) as last_day,
        count(*) as days
    from keypair_trend
    group by project_id, keypair_name
    union all
    select
        'failure_trend_server' as trend,
        project_id,
        server_id as key,
        min(day) as first_day,
        max(day) as last_day,
        count(*) as days
    from server_trend
    group by project_id, server_id
    union all
    select
        'failure_trend_error_code' as trend,
        project_id,
        error_code as key,
        min(day) as first_day,
        max(day) as last_day,
        count(*) as days
    from error_code_trend
    group by project_id, error_code
),

final as (
    select
        spans.trend,
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
