"""``python -m kvspec`` is the ``kvspec`` command."""

from kvspec.cli import main

raise SystemExit(main())
