import sys

if sys.argv[1:2] == ["history"]:
    from stages.orchestrator.history_cli import main as history

    sys.exit(history(sys.argv[2:]))

from stages.orchestrator.app import main

main()
