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
-- touch, the key pairs a server's failures involve. Each dimension is grouped on its own, then
-- counted (half the time of one grouping with a distinct count), and summed by day on its own:
-- one grouping of the three dimensions' days held twice the groups at once, more than the build's
-- memory limit, and spilled
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

-- a NULL touched counts no server (or key pair), as a distinct count would
keypair_days as (
    select
        'keypair' as dimension,
        project_id,
        key,
        failed_day as day,
        cast(sum(failures) as bigint) as failures,
        count(touched) as breadth
    from keypair_touches
    group by
        project_id,
        key,
        failed_day
),

server_days as (
    select
        'server' as dimension,
        project_id,
        key,
        failed_day as day,
        cast(sum(failures) as bigint) as failures,
        count(touched) as breadth
    from server_touches
    group by
        project_id,
        key,
        failed_day
),

error_code_days as (
    select
        'error_code' as dimension,
        project_id,
        key,
        failed_day as day,
        cast(sum(failures) as bigint) as failures,
        count(touched) as breadth
    from error_code_touches
    group by
        project_id,
        key,
        failed_day
),

final as (
    select * from keypair_days
    union all
    select * from server_days
    union all
    select * from error_code_days
)

select * from final
