import sys

from umm.cli import main

sys.exit(main())
