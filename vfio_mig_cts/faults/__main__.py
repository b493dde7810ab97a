"""``python -m vfio_mig_cts.faults [NAME...]``: the fault catalogue (see catalogue.py)."""

import sys

from vfio_mig_cts.faults.catalogue import main

sys.exit(main(sys.argv[1:]))
