"""`python -m experiments.harness`: the harness's command line, the same as `python -m experiments.hypothesis`."""
import sys

from experiments.hypothesis import main

if __name__ == "__main__":
    sys.exit(main())
