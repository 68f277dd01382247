"""`python -m experiments.mup_transfer`, kept at its old path: the study is `experiments.studies.mup_transfer`."""
import sys

from experiments.studies.mup_transfer import main

if __name__ == "__main__":
    sys.exit(main())
