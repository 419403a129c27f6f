"""``python -m infra.cli``: the same as the ``tokenledger`` console script."""

import sys

from infra.cli.core import main

sys.exit(main())
