-- Warns while no segment model is fitted: too few shoppers have min_events events so far (the run
-- printed how many are eligible and how many are needed) and every shopper is not_enough_history.
{{ config(severity='warn') }}

select 'no segment model version: every shopper is not_enough_history' as problem
where
    not exists (
        select 1
        from {{ fitted_relation('segment_model') }}
    )
