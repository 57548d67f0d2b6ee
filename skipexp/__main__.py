from skipexp.cli import main

main()
