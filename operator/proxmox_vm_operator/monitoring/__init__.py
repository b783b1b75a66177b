"""Monitoring artefacts generated from code: Prometheus alert rules and the Grafana dashboard."""
