"""``python -m zwmd`` is ``zwmd``."""

from zwmd.cli import main

raise SystemExit(main())
