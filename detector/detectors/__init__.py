"""The built-in detectors: one module per family, each registering its kinds with ``@register``.

A new detector is a new file here: ``detector.registry`` imports every module of this package (with
``pkgutil``) on the first lookup, so nothing else needs to name it. Each follows the contract in
``detector.base`` (``tests/test_detector_contract.py`` checks every registered kind).
"""
