from celestecli.cli import main

main()
