{#- Mean and spread across folds of each supervised assignment model's cross-validated scores. -#}
{{ config(materialized='view') }}

select
    model_version,
    classifier,
    count(*) as folds,
    avg(accuracy) as accuracy_mean,
    stddev_samp(accuracy) as accuracy_std,
    min(accuracy) as accuracy_min,
    max(accuracy) as accuracy_max,
    avg(macro_f1) as macro_f1_mean,
    stddev_samp(macro_f1) as macro_f1_std,
    min(macro_f1) as macro_f1_min,
    max(macro_f1) as macro_f1_max,
    avg(extreme_accuracy) as extreme_accuracy_mean,
    sum(test_users) as users
from {{ fitted_relation('segment_classifier_cv') }}
group by model_version, classifier
