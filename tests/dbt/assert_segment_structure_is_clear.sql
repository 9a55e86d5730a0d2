{{ config(severity='warn') }}
-- Warns when the current model version's verdict on structure is not `clear`: its segments separate
-- shoppers little (`weak`) or no better (`none`) than the same data with its structure removed, so
-- they are not distinct groups to target (docs/model.md, "Is there structure?").
select
    model_version,
    text_value as structure_verdict
from {{ segment_model_relation() }}
where
    param_group = 'structure'
    and param_name = 'verdict'
    and text_value <> 'clear'
    and model_version = (
        select max(versions.model_version) from {{ segment_model_relation() }} as versions
    )
