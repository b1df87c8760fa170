"""``python -m srl``."""

from srl.cli import main

main()
