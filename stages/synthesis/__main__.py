from stages.synthesis.app import main

main()
