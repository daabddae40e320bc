"""One router per resource: alerts, assets, health, maintenance, metrics (listed in api.app.ROUTERS)."""
