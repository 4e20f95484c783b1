"""`python -m trafficmirror` runs the CLI."""

from trafficmirror.cli import main

main()
