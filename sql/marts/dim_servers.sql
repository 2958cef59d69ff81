-- one row per server that ever had a failed task in a project, under the name of its latest
-- failure (servers can be renamed; their id stays)
with

tasks as (
    select * from intermediate.int_tasks__latest
),

server_tasks as (
    select
        project_id,
        -- a few tasks name no server; they are counted under one visible id
        coalesce(server_id, 'UNKNOWN') as server_id,
        server_name,
        keypair_name,
        task_id,
        failed_at,
        failed_day,
        is_open
    from tasks
),

server_summary as (
    select
        project_id,
        server_id,
        count(*) as failures,
        count(*) filter (where is_open) as open_tasks,
        count(distinct keypair_name) as keypairs_involved,
        min(failed_at) as first_failed_at,
        max(failed_at) as last_failed_at,
        min(failed_day) as first_failed_day
    from server_tasks
    group by
        project_id,
        server_id
),

-- the server's latest failures (more than one when they failed at the same instant), of which
-- the one with the greatest task id names it: found by a join on the summary's last failure,
-- not by sorting every task
latest_failures as (
    select
        server_tasks.project_id,
        server_tasks.server_id,
        server_tasks.server_name,
        row_number() over (
            partition by server_tasks.project_id, server_tasks.server_id
            order by server_tasks.task_id desc
        ) as recency
    from server_tasks
    inner join server_summary
        on server_summary.project_id = server_tasks.project_id
        and server_summary.server_id = server_tasks.server_id
        and server_summary.last_failed_at = server_tasks.failed_at
),

latest_names as (
    select
        project_id,
        server_id,
        server_name
    from latest_failures
    where recency = 1
),

final as (
    select
        server_summary.project_id,
        server_summary.server_id,
        latest_names.server_name,
        server_summary.failures,
        server_summary.open_tasks,
        server_summary.keypairs_involved,
        server_summary.first_failed_at,
        server_summary.last_failed_at,
        server_summary.first_failed_day
    from server_summary
    inner join latest_names
        on latest_names.project_id = server_summary.project_id
        and latest_names.server_id = server_summary.server_id
)

select * from final
