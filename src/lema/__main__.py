"""`python -m lema`: the same CLI as the `lema` script (DVC stage commands of a run dir use it)."""

import sys

from lema.cli import main

sys.exit(main())
