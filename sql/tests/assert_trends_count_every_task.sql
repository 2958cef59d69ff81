-- local: project_id
-- every task (a row of marts.fct_failed_tasks, and of the model it is made of) is counted
-- exactly once in each daily trend: a task dropped (say, for a NULL key) or counted twice would
-- show here as a per-project difference
with

tasks as (
    select * from intermediate.int_tasks__latest
),

keypair_trend as (
    select * from marts.failure_trend_keypair
),

server_trend as (
    select * from marts.failure_trend_server
),

error_code_trend as (
    select * from marts.failure_trend_error_code
),

expected as (
    select
        project_id,
        count(*) as tasks
    from tasks
    group by project_id
),

counted as (
    select 'failure_trend_keypair' as trend, project_id, sum(failures) as failures
    from keypair_trend
    group by project_id
    union all
    select 'failure_trend_server' as trend, project_id, sum(failures) as failures
    from server_trend
    group by project_id
    union all
    select 'failure_trend_error_code' as trend, project_id, sum(failures) as failures
    from error_code_trend
    group by project_id
),

trends as (
    select 'failure_trend_keypair' as trend
    union all
    select 'failure_trend_server' as trend
    union all
    select 'failure_trend_error_code' as trend
),

final as (
    select
        trends.trend,
        expected.project_id,
        expected.tasks,
        coalesce(counted.failures, 0) as failures
    from expected
    cross join trends
    left join counted
        on counted.trend = trends.trend
        and counted.project_id = expected.project_id
    where coalesce(counted.failures, 0) <> expected.tasks
)

select * from final
