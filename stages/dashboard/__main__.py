from stages.dashboard.app import main

main()
