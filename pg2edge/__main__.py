from pg2edge.cli import main

raise SystemExit(main())
