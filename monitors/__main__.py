import sys

from trustops.monitors.cli import main

sys.exit(main())
