"""The live service: wiring from settings, the pipeline stages, saved models."""
