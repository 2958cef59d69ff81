-- one row per task ever seen in a project: what the API said about it last, when the warehouse
-- first saw it and when it left the API's list; marts.fct_failed_tasks is this plus when the
-- warehouse last saw it, which every run moves, so the marts that do not need it read this model
-- and are left as they are when no task changed
with

-- read by each branch below as it needs it: materialized once (DuckDB's default for a CTE read
-- more than once), every version would be copied in full first, a third of this model's time
versions as not materialized (
    select * from staging.stg_kps__failed_tasks
),

-- the tasks with more than one version (changed, or listed again after they left the list).
-- Most tasks have one: it is their latest and holds their whole history, so only these go
-- through the windows below (windows over every task's dozen text columns took two thirds of
-- this model's time)
changed_tasks as (
    select
        project_id,
        task_id
    from versions
    group by
        project_id,
        task_id
    having count(*) > 1
),

changed_versions as (
    select versions.*
    from versions
    semi join changed_tasks
        on changed_tasks.project_id = versions.project_id
        and changed_tasks.task_id = versions.task_id
),

ranked_versions as (
    select
        changed_versions.*,
        row_number() over newest_first as recency,
        -- newest first, the row before a version is the version that followed it
        lag(valid_from) over newest_first as next_valid_from
    from changed_versions
    window newest_first as (
        partition by project_id, task_id
        -- a current version means the API still lists the task; an incomplete pass can leave
        -- two current versions for a while, and then the later one is right
        order by is_current desc, valid_from desc, valid_to desc, version_hash
    )
),

-- the task's history beside each of its versions: windows over the same partition, so that
-- the latest version needs no join back to the others
task_history as (
    select
        ranked_versions.*,
        min(valid_from) over task as first_seen_at,
        count(*) over task as version_count,
        -- a version retired with no successor at that instant is the task leaving the list;
        -- a successor starting at that instant is only a change of content
        count(*) filter (
            where valid_to is not null
            and (next_valid_from is null or next_valid_from > valid_to)
        ) over task as times_cleared
    from ranked_versions
    window task as (partition by project_id, task_id)
),

-- the latest version of an unchanged task, with task_history's columns in its order
unchanged_tasks as (
    select
        versions.*,
        cast(1 as bigint) as recency,
        cast(null as timestamp with time zone) as next_valid_from,
        versions.valid_from as first_seen_at,
        cast(1 as bigint) as version_count,
        cast(case when versions.valid_to is null then 0 else 1 end as bigint) as times_cleared
    from versions
    anti join changed_tasks
        on changed_tasks.project_id = versions.project_id
        and changed_tasks.task_id = versions.task_id
),

latest_versions as (
    select * from task_history
    where recency = 1
    union all
    select * from unchanged_tasks
),

final as (
    select
        project_id,
        region,
        task_id,
        failed_at,
        failed_day,
        operate_type,
        error_code,
        error_msg,
        server_id,
        server_name,
        keypair_name,
        extra_fields,
        first_seen_at,
        valid_from,
        valid_to as cleared_at,
        valid_to is null as is_open,
        (extract(epoch from valid_to) - extract(epoch from failed_at)) / 3600 as hours_to_clear,
        version_count,
        times_cleared
    from latest_versions
)

select * from final
