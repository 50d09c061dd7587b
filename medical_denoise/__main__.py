"""``python -m medical_denoise``: the ``medical-denoise`` command."""

import sys

from medical_denoise.cli import main

sys.exit(main())
