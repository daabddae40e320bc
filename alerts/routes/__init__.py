"""One router per resource: alerts, health, metrics."""
