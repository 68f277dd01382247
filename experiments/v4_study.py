"""`python -m experiments.v4_study`, kept at its old path: the study is `experiments.studies.v4_study`."""
import sys

from experiments.studies.v4_study import main

if __name__ == "__main__":
    sys.exit(main())
