"""What `plantwatch run` loads: scikit-learn and SciPy (~90 MB resident) only when a model needs them; never
numpy.random (1.6 MB) or Alembic (11 MB, only to upgrade an alert store)."""

from __future__ import annotations

import subprocess
import sys


def test_the_service_does_not_load_scikit_learn_or_scipy_until_a_model_needs_them_nor_what_it_never_needs() -> None:
    code = (
        "import sys\n"
        "import plantwatch.service.wiring, plantwatch.cli.run\n"
        "from plantwatch.settings import load_settings\n"
        "load_settings(None, storage__kind='sqlite')\n"  # the learnability trial runs here
        "print(sorted(m for m in ('sklearn', 'scipy', 'pyod', 'numpy.random', 'alembic') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
    fitted = (
        "import sys\nfrom detector.rul import RulModel\nRulModel()._regressors()\nprint('sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", fitted], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"  # imported where a RUL model is fitted
