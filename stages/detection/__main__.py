import sys

from stages.detection.cli import main

sys.exit(main())
