"""``python -m mmuemu``."""
from mmuemu.cli import console_main

console_main()
