"""``python -m mmuemu.trace diff|stats|plot|convert ...``."""
import sys

from mmuemu.trace.cli import main

sys.exit(main())
