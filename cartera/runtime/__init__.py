"""Running a node: its scheduled jobs, the run until a duration, a signal or a stop, and the orderly shutdown."""
