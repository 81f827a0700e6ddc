"""``python -m segmentai_web``: same as ``segmentai web``."""

import sys

from . import main

sys.exit(main())
