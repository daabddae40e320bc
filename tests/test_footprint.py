"""What `plantwatch run` loads: scikit-learn and SciPy (~90 MB resident) only when a model needs them."""

from __future__ import annotations

import subprocess
import sys


def test_the_service_does_not_load_scikit_learn_or_scipy_until_a_model_needs_them() -> None:
    code = (
        "import sys\n"
        "import plantwatch.service.wiring, plantwatch.cli.run\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'pyod') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
    fitted = (
        "import sys\nfrom detector.rul import RulModel\nRulModel()._regressors()\nprint('sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", fitted], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"  # imported where a RUL model is fitted
