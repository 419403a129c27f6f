"""`python -m infra.chaos`: the chaos run's command line (`infra.chaos.run.main`)."""

import sys

from infra.chaos.run import main

sys.exit(main())
