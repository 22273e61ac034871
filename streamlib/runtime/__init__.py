"""Running a graph: ``Runtime``, the clock driver, dispatchers, worker pool and process pool, watchdog, supervisor and shutdown.
"""
