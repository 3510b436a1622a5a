from ftops.demo_fleet.inbox import main

raise SystemExit(main())
