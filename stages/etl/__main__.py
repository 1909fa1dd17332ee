from stages.etl.app import main

main()
