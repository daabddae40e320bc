"""Offline work on sensor logs: backtest through the live detector, and benchmark scoring (SKAB, NAB)."""
