"""`python -m fixer` runs the CLI."""

from fixer.cli import main

main()
