"""The parts of bench/recorder.py: proxies, load, instruction counts, report.

bench/recorder.py is the entry point and says what is measured; these modules
are imported from it (bench/ is first on `sys.path` when it runs).
"""
