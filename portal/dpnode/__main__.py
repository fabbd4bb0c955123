"""`python -m portal.dpnode run --root DIR --bind HOST:PORT` (see portal/dpnode/cli.py)."""
import sys

from portal.dpnode.cli import main

sys.exit(main())
