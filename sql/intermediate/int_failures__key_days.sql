-- one row per key (a key pair, server or error code), project and UTC day on which the key
-- failed: the days with failures only, from which the zero-filled daily trends and the spikes
-- are made. A task that names no key pair or server still counts, under one visible name (as
-- in marts.dim_servers)
with

-- read by each grouping below as it needs it: materialized once, every task would be copied
-- in full first
tasks as not materialized (
    select * from intermediate.int_tasks__latest
),

-- what breadth counts, once per day: the servers a key pair's or an error code's failures
-- touch, the key pairs a server's failures involve. Each dimension grouped on its own, then
-- counted: half the time of one grouping of the three dimensions' rows with a distinct count
keypair_touches as (
    select
        project_id,
        coalesce(keypair_name, 'UNKNOWN') as key,
        failed_day,
        server_id as touched,
        count(*) as failures
    from tasks
    group by
        project_id,
        coalesce(keypair_name, 'UNKNOWN'),
        failed_day,
        server_id
),

server_touches as (
    select
        project_id,
        coalesce(server_id, 'UNKNOWN') as key,
        failed_day,
        keypair_name as touched,
        count(*) as failures
    from tasks
    group by
        project_id,
        coalesce(server_id, 'UNKNOWN'),
        failed_day,
        keypair_name
),

error_code_touches as (
    select
        project_id,
        error_code as key,
        failed_day,
        server_id as touched,
        count(*) as failures
    from tasks
    group by
        project_id,
        error_code,
        failed_day,
        server_id
),

touches as (
    select
        'keypair' as dimension,
        *
    from keypair_touches
    union all
    select
        'server' as dimension,
        *
    from server_touches
    union all
    select
        'error_code' as dimension,
        *
    from error_code_touches
),

final as (
    select
        dimension,
        project_id,
        key,
        failed_day as day,
        cast(sum(failures) as bigint) as failures,
        -- a NULL touched counts no server (or key pair), as a distinct count would
        count(touched) as breadth
    from touches
    group by
        dimension,
        project_id,
        key,
        failed_day
)

select * from final
