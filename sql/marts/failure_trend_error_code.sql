-- one row per UTC day, project and error code, zero-filled from the code's first failure to the
-- latest day in the data, so that the rolling windows count days without failures too
with

error_code_days as (
    select * from intermediate.int_failures__daily
    where dimension = 'error_code'
),

final as (
    select
        day,
        project_id,
        key as error_code,
        failures,
        failures_7d,
        failures_prev_7d,
        breadth as servers_affected
    from error_code_days
)

select * from final
