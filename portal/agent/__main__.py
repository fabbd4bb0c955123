"""`python -m portal.agent --server URL --enroll-token T --target DIR`."""
from . import main

main()
