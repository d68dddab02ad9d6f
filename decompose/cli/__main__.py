"""`python -m decompose.cli ...`, as the installed `decompose` script."""

import sys

from decompose.cli.app import main

sys.exit(main())
