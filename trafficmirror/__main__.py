"""`python -m trafficmirror` runs the CLI."""

from trafficmirror.cli.main import main

main()
