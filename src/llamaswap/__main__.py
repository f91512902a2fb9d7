"""`python -m llamaswap` is the `llamaswap` command."""

from llamaswap.cli import main

raise SystemExit(main())
