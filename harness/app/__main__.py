from harness.app.server import main

main()
