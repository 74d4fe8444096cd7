from harness.proxy.server import main

main()
