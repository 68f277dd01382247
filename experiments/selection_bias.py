"""`python -m experiments.selection_bias`, kept at its old path: the study is `experiments.studies.selection_bias`."""
import sys

from experiments.studies.selection_bias import main

if __name__ == "__main__":
    sys.exit(main())
