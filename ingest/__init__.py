"""The edges of plantwatch: MQTT source, payload decoding, InfluxDB sink, log replay."""
