import sys

from benchmarks.detection_live.cli import main

sys.exit(main())
