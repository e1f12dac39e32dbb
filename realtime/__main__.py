from realtime.cli.main import main

raise SystemExit(main())
