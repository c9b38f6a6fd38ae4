"""`python -m reconciler` runs the drctl command line."""

from reconciler.cli.main import main

raise SystemExit(main())
