from stages.consumer.main import main

main()
