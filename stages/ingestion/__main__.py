from stages.ingestion.app import main

main()
