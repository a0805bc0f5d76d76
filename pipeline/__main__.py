import sys

from pipeline.cli import main

if __name__ == "__main__":  # hashing worker processes import this module too
    sys.exit(main())
