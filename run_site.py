#!/usr/bin/env python3
"""Start or operate one Cartera site node: ``python run_site.py --site NAME [COMMAND]`` (see --help)."""

import sys

from cartera.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
