"""``python -m engage`` is the ``engage`` command."""

from engage.cli import main

main()
