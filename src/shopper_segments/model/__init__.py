"""The segmentation model: fitting, choosing k, stable identities, names, and the post-fit analyses.

Dependencies point one way, from the building blocks up to the fit and its callers:

- `params`: settings, feature specs, preprocessing, the tidy parameter table, `StoredModel`;
- `selection` (k and PCA), `structure` (is there structure to segment?), `naming` (portraits and
  names), `identity` (ids kept across versions), `drift` (training bins);
- `training`: fits a version with all of the above (`train_new_version`);
- `analyses`: the post-fit analyses of the stored model; `reference_features`: the features
  recomputed in pandas (the analyses' threshold curve and the tests);
- `duckdb_inputs` (the dbt Python models' inputs on DuckDB), `fit` (`segments fit` on warehouses
  without Python models), `model_report` (a text summary of a version).
"""
