"""`python -m reconciler` runs the drctl command line."""

from reconciler.cli import main

raise SystemExit(main())
