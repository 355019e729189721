from api.server import main

raise SystemExit(main())
