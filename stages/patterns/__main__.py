from stages.patterns.app import main

main()
