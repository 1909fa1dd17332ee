from stages.consolidation.app import main

main()
