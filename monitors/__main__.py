import sys

from monitors.cli import main

sys.exit(main())
