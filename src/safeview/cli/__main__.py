"""``python -m safeview.cli``."""

from safeview.cli import main

main()
