"""`python -m plantwatch.cli ...` is the same as the `plantwatch` console script."""

import sys

from plantwatch.cli import main

sys.exit(main())
