"""Tests of the alert rules, the monitoring manifests and the runbooks."""
