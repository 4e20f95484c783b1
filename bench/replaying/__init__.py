"""The parts of bench/replay.py: traffic, shadow, floor, runs, report, profile.

bench/replay.py is the entry point and says what is measured; these modules
are imported from it (bench/ is on `sys.path` when it runs).
"""
