-- Every file in raw.event_files has exactly one row in the load audit after a build:
-- no landed file is left unprocessed by the staging models.
select event_files.load_id
from {{ source('raw', 'event_files') }} as event_files
left join {{ ref('stg_event_loads') }} as audit
    on event_files.load_id = audit.load_id
where audit.load_id is null
