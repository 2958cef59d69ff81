-- local: project_id
-- every task (a row of marts.fct_failed_tasks, and of the model it is made of) is counted
-- exactly once in each daily trend: a task dropped (say, for a NULL key) or counted twice would
-- show here as a per-project difference. The trend marts are int_failures__series with its keys
-- named, one dimension each
with

tasks as (
    select * from intermediate.int_tasks__latest
),

series as (
    select * from intermediate.int_failures__series
),

failure_keys as (
    select * from intermediate.int_failures__keys
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

-- summed by key before the keys are joined: thousands of rows to join, not millions
by_key as (
    select
        project_id,
        key_number,
        sum(failures) as failures
    from series
    group by
        project_id,
        key_number
),

counted as (
    select
        failure_keys.dimension,
        by_key.project_id,
        sum(by_key.failures) as failures
    from by_key
    inner join failure_keys
        on failure_keys.project_id = by_key.project_id
        and failure_keys.key_number = by_key.key_number
    group by
        failure_keys.dimension,
        by_key.project_id
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
