"""Pure detection math: alignment, detectors, calibration, alarm rules, contributions.

Imports only numpy, scikit-learn, PyOD and the standard library. Timestamps arrive with the data.

Where things are:

* ``monitor``: ``AssetMonitor``, one asset's chain, coordinating the parts below; ``config``: its one
  frozen ``MonitorConfig``; ``events``: what it reports besides verdicts.
* ``intake`` (readings → aligned rows, via ``align``), ``gate`` (usable rows), ``baseline`` (learning a
  model, with ``features``, ``calibration`` and ``episode``), ``adaptation`` (refits, ``memory``),
  ``alarm``, ``explain``, ``advice``, ``state`` (the saved-model format and its older layouts).
* ``detectors/``: one file per detector family, registered by name (``registry``; contract in ``base``).
* ``health``, ``rul``: maintenance prediction; ``types``: the messages other rooms use.
"""
