"""``python -m safeview``: the command line."""

from safeview.cli import main

main()
