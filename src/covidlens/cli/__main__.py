from covidlens.cli import main

raise SystemExit(main())
