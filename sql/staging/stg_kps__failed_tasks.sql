-- one row per version of a failed task as the KPS API listed it, typed and renamed;
-- a version is current (the API still lists it) while valid_to is null
with

source as (
    select * from kps_raw.failed_tasks
),

final as (
    select
        project_id,
        region,
        task_id,
        operate_type,
        task_time,
        failed_at,
        -- a UTC day whatever the session's time zone
        cast(failed_at at time zone 'UTC' as date) as failed_day,
        -- the API omits the code for some failures; one visible code keeps them in every count
        coalesce(nullif(trim(task_error_code), ''), 'UNKNOWN') as error_code,
        task_error_msg as error_msg,
        server_id,
        server_name,
        keypair_name,
        extra_fields,
        -- a version is this content (its hash) from this time on: a task that leaves the list
        -- and comes back unchanged has two versions with one hash
        row_hash as version_hash,
        _dlt_valid_from as valid_from,
        _dlt_valid_to as valid_to,
        _dlt_valid_to is null as is_current,
        run_id as first_run_id
    from source
)

select * from final
