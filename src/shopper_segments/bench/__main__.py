"""`python -m shopper_segments.bench`: the benchmark, or (with --worker) one reference run in its own process."""

import argparse
import sys

from . import __doc__ as description
from . import _worker, add_arguments, run

if "--worker" in sys.argv:
    sys.exit(_worker(sys.argv[1:]))
parser = argparse.ArgumentParser(prog="python -m shopper_segments.bench", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
add_arguments(parser)
sys.exit(run(parser.parse_args()))
