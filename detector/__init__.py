"""Pure detection math: alignment, detectors, calibration, alarm rules, contributions.

Imports only numpy, scikit-learn, PyOD and the standard library. Timestamps arrive with the data.
"""
