"""One router per resource: alerts, health, maintenance, metrics."""
