-- one row per task ever seen in a project: what the API said about it last, when the warehouse
-- first and last saw it, and when it left the API's list
with

tasks as (
    select * from intermediate.int_tasks__latest
),

last_seen as (
    select * from intermediate.int_tasks__last_seen
),

final as (
    select
        tasks.project_id,
        tasks.region,
        tasks.task_id,
        tasks.failed_at,
        tasks.failed_day,
        tasks.operate_type,
        tasks.error_code,
        tasks.error_msg,
        tasks.server_id,
        tasks.server_name,
        tasks.keypair_name,
        tasks.extra_fields,
        tasks.first_seen_at,
        last_seen.last_seen_at,
        tasks.cleared_at,
        tasks.is_open,
        tasks.hours_to_clear,
        tasks.version_count,
        tasks.times_cleared
    from tasks
    left join last_seen
        on last_seen.project_id = tasks.project_id
        and last_seen.valid_from = tasks.valid_from
        and last_seen.valid_to is not distinct from tasks.cleared_at
)

select * from final
