-- local: project_id
-- every task (a row of marts.fct_failed_tasks, and of the model it is made of) is counted
-- exactly once in each daily trend: a task dropped (say, for a NULL key) or counted twice would
-- show here as a per-project difference. The trend marts are views of int_failures__daily, one
-- dimension each, with nothing left out
with

tasks as (
    select * from intermediate.int_tasks__latest
),

daily as (
    select * from intermediate.int_failures__daily
),

dimensions as (
    select 'keypair' as dimension
    union all
    select 'server' as dimension
    union all
    select 'error_code' as dimension
),

expected as (
    select
        project_id,
        count(*) as tasks
    from tasks
    group by project_id
),

counted as (
    select
        dimension,
        project_id,
        sum(failures) as failures
    from daily
    group by
        dimension,
        project_id
),

final as (
    select
        dimensions.dimension,
        expected.project_id,
        expected.tasks,
        coalesce(counted.failures, 0) as failures
    from expected
    cross join dimensions
    left join counted
        on counted.dimension = dimensions.dimension
        and counted.project_id = expected.project_id
    where coalesce(counted.failures, 0) <> expected.tasks
)

select * from final
