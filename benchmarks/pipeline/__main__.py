from benchmarks.pipeline.cli import main

main()
