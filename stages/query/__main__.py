import sys

from stages.query.main import main

sys.exit(main())
