from airduck.cli import main

main()
