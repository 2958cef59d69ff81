-- one row per UTC day, project and server, zero-filled from the server's first failure to the
-- latest day in the data, so that the rolling windows count days without failures too
with

server_days as (
    select * from intermediate.int_failures__daily
    where dimension = 'server'
),

servers as (
    select * from marts.dim_servers
),

final as (
    select
        server_days.day,
        server_days.project_id,
        server_days.key as server_id,
        -- named after the server's latest failure, as in marts.dim_servers
        servers.server_name,
        server_days.failures,
        server_days.failures_7d,
        server_days.failures_prev_7d,
        server_days.breadth as keypairs_involved
    from server_days
    -- every server of the trend is in dim_servers (both come from the tasks); a left join
    -- keeps the view one dimension of int_failures__daily, row for row, whatever happens
    left join servers
        on servers.project_id = server_days.project_id
        and servers.server_id = server_days.key
)

select * from final
