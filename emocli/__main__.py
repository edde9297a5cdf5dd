from emocli.cli import main

main()
