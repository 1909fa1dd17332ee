from stages.emulator.server import main

main()
