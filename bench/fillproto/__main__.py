import sys

from bench.fillproto.proto import main

sys.exit(main())
