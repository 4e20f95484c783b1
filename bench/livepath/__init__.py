"""The parts of bench/live_path.py: load generator, nginx, rows, runs, report.

bench/live_path.py is the entry point and says what is measured; these modules
are imported from it (bench/ is first on `sys.path` when it runs). The load
generator (`loadgen.py`) also runs as a script of its own, one process per
measurement.
"""
