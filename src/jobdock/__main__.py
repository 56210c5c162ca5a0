from jobdock.cli import main

main()
