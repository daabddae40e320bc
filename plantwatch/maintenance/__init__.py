"""Maintenance prediction: health trend per asset, live remaining-useful-life, RUL model files."""
