"""The detection scoreboard (``python -m benchmarks.detection``): see ``cli.py``."""
