"""``python -m inception_kernels info | verify | report | bench | train | evaluate``: see
:mod:`inception_kernels.tools.cli`."""

import sys

from .tools.cli import main

sys.exit(main())
