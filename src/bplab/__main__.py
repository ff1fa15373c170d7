from bplab.cli import main

raise SystemExit(main())
