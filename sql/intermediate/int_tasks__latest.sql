-- one row per task ever seen in a project: what the API said about it last, when the warehouse
-- first saw it and when it left the API's list; marts.fct_failed_tasks is this plus when the
-- warehouse last saw it, which every run moves, so the marts that do not need it read this model
-- and are left as they are when no task changed
with

versions as (
    select * from staging.stg_kps__failed_tasks
),

-- ranking needs only the keys; the rest of a version is joined back once, for the latest one
ranked_versions as (
    select
        project_id,
        task_id,
        version_hash,
        valid_from,
        valid_to,
        row_number() over newest_first as recency,
        -- newest first, the row before a version is the version that followed it
        lag(valid_from) over newest_first as next_valid_from
    from versions
    window newest_first as (
        partition by project_id, task_id
        -- a current version means the API still lists the task; an incomplete pass can leave
        -- two current versions for a while, and then the later one is right
        order by is_current desc, valid_from desc, valid_to desc, version_hash
    )
),

task_history as (
    select
        project_id,
        task_id,
        min(valid_from) as first_seen_at,
        count(*) as version_count,
        -- a version retired with no successor at that instant is the task leaving the list;
        -- a successor starting at that instant is only a change of content
        count(*) filter (
            where valid_to is not null
            and (next_valid_from is null or next_valid_from > valid_to)
        ) as times_cleared
    from ranked_versions
    group by project_id, task_id
),

latest_versions as (
    select versions.*
    from versions
    inner join ranked_versions
        on ranked_versions.version_hash = versions.version_hash
        and ranked_versions.valid_from = versions.valid_from
    where ranked_versions.recency = 1
),

final as (
    select
        latest_versions.project_id,
        latest_versions.region,
        latest_versions.task_id,
        latest_versions.failed_at,
        latest_versions.failed_day,
        latest_versions.operate_type,
        latest_versions.error_code,
        latest_versions.error_msg,
        latest_versions.server_id,
        latest_versions.server_name,
        latest_versions.keypair_name,
        latest_versions.extra_fields,
        task_history.first_seen_at,
        latest_versions.valid_from,
        latest_versions.valid_to as cleared_at,
        latest_versions.valid_to is null as is_open,
        (
            extract(epoch from latest_versions.valid_to)
            - extract(epoch from latest_versions.failed_at)
        ) / 3600 as hours_to_clear,
        task_history.version_count,
        task_history.times_cleared
    from latest_versions
    inner join task_history
        on task_history.project_id = latest_versions.project_id
        and task_history.task_id = latest_versions.task_id
)

select * from final
