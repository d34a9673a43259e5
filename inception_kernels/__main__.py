"""``python -m inception_kernels info | verify``: see :mod:`inception_kernels.cli`."""

import sys

from .cli import main

sys.exit(main())
