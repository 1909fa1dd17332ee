"""``python -m stages.detection``: the detection service (what start.sh and compose run);
``python -m stages.detection score-csv INPUT OUTPUT``: the command-line tools."""

import sys

if len(sys.argv) <= 1 or sys.argv[1] == "serve":
    from stages.detection.app import main as serve

    serve()
else:
    from stages.detection.cli import main

    sys.exit(main())
