"""Alert lifecycle, alert store and the HTTP API."""
