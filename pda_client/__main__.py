"""`python -m pda_client ...`: the handheld's command-line interface."""

import sys

from .cli import main

sys.exit(main())
