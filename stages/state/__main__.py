from stages.state.app import main

main()
