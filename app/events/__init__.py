"""Events: what happened to a pool (a group filled, the pool ran low, an admin changed it), as
recorded by the scan script, the scheduler and the service layer, read by the API, the console
and the webhooks."""
