"""``python -m srl``."""

from srl.launcher import main

main()
