{{ config(severity='warn') }}
-- Warns when the newest run's shoppers have drifted from the current model version's training data:
-- a feature or the segment mix with a PSI at or above drift_psi_drifting (docs/model.md, "Drift").
-- `segments run --retrain-if-drifted` fits a new version when the verdict is `retrain recommended`.
select
    measure_type,
    measure_name,
    psi,
    measure_status
from {{ ref('segment_drift') }}
where
    measure_type in ('feature_psi', 'segment_mix_psi')
    and measure_status <> 'stable'
    and run_started_at = (select max(runs.run_started_at) from {{ ref('segment_drift') }} as runs)
