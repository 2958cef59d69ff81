-- one row per UTC day, project and key pair, zero-filled from the key pair's first failure to
-- the latest day in the data, so that the rolling windows count days without failures too
with

keypair_days as (
    select * from intermediate.int_failures__daily
    where dimension = 'keypair'
),

final as (
    select
        day,
        project_id,
        key as keypair_name,
        failures,
        failures_7d,
        failures_prev_7d,
        breadth as servers_affected
    from keypair_days
)

select * from final
