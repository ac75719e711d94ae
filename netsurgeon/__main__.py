from netsurgeon.cli import main

main()
