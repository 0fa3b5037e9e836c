from rollover.cli import main

main()
