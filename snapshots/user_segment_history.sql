{% snapshot user_segment_history %}
    {#- The history of every shopper's segment (properties: user_segment_history.yml). It reads the rows
        of user_segments written since its previous run (segment_history_cutoff): a daily run compares
        the day's changes, not every shopper; a shopper absent from them is unchanged (hard deletes
        are ignored; departed shoppers are purged by the pre-hook in dbt_project.yml). -#}
    {{ config(
        unique_key='user_id',
        strategy='check',
        check_cols=['segment_status', 'segment_id', 'model_version'],
        hard_deletes='ignore'
    ) }}

    {%- set cutoff = segment_history_cutoff() %}

    select
        user_id,
        segment_status,
        segment_id,
        segment_name,
        distance_to_centroid,
        model_version,
        scored_at
    from {{ ref('user_segments') }}
    {%- if cutoff %}
        where scored_at > {{ cutoff }}
    {%- endif %}
{% endsnapshot %}
