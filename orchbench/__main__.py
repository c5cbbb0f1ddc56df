from orchbench.cli.main import main

main()
