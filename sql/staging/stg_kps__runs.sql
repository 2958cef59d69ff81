-- one row per run and project: when it ran, whether it succeeded, and whether its pass was
-- complete (only complete passes clear tasks)
with

source as (
    select * from kps_raw.runs
),

final as (
    select
        run_id,
        project_id,
        region,
        started_at,
        finished_at,
        status,
        status = 'ok' as is_ok,
        coalesce(complete, false) as is_complete,
        tasks_seen,
        rejected as rejected_records,
        error as error_message,
        note,
        pages,
        requests,
        extract(epoch from finished_at) - extract(epoch from started_at) as duration_seconds
    from source
)

select * from final
