from registryd.cli import main

raise SystemExit(main())
