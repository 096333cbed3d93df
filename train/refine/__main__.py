import sys

from train.refine.cli import main

sys.exit(main())
