"""Getting data in: event files checked (`files`) and landed exactly once (`loader`, `redshift_landing`),
the warehouse connections (`connections`) and the privacy schema (`privacy`: pseudonymisation key,
erasures). Imports nothing of `model`, `report` or `cli`.
"""
