import sys

from telepty.cli.main import main

sys.exit(main())
