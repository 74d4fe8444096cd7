"""The fixture app: one replica that says who served each request and keeps a cart per session."""

# Straight to a replica (not through the balancer): how many active health checks
# (GET /healthz) it has answered, so the harness can time a fault to land just after one.
HEALTH_CHECKS_PATH = "/_stickler/health-checks"
