"""Alert outputs: where alert changes go besides the API (MQTT, webhooks), one file each behind
:class:`plantwatch.outputs.base.AlertOutput`; :mod:`plantwatch.service.notifier` feeds them."""
