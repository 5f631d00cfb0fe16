"""`python -m digest.cli`: the same as the `digest` command."""

from digest.cli import main

main()
