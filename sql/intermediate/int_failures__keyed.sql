-- one row per task and key it counts under: its key pair, its server and its error code, with
-- what breadth counts (the servers a key pair's or an error code's failures touch, the key pairs
-- a server's failures involve); a task that names no key pair or server still counts, under one
-- visible name (as in marts.dim_servers)
with

-- read by each branch below as it needs it: materialized once, every task would be copied in
-- full first, only to be filtered (by day, by project) afterwards
tasks as not materialized (
    select * from intermediate.int_tasks__latest
),

final as (
    select
        'keypair' as dimension,
        project_id,
        coalesce(keypair_name, 'UNKNOWN') as key,
        failed_day,
        server_id as touched,
        is_open,
        hours_to_clear
    from tasks
    union all
    select
        'server' as dimension,
        project_id,
        coalesce(server_id, 'UNKNOWN') as key,
        failed_day,
        keypair_name as touched,
        is_open,
        hours_to_clear
    from tasks
    union all
    select
        'error_code' as dimension,
        project_id,
        error_code as key,
        failed_day,
        server_id as touched,
        is_open,
        hours_to_clear
    from tasks
)

select * from final
