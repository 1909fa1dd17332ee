import sys

from benchmarks.detection.cli import main

sys.exit(main())
