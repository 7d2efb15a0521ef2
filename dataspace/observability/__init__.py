"""What operators see of a running space: structured logs, metrics, liveness and readiness."""
