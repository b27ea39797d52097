"""
Operations: the HTTP endpoint (metrics, liveness, readiness), Prometheus
metrics, systemd notifications, and log formats.
"""
