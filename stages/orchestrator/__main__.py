from stages.orchestrator.app import main

main()
