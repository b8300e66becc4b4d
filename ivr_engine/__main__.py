import sys

from ivr_engine.cli import main

sys.exit(main())
