"""`python -m experiments.v3_study`, kept at its old path: the study is `experiments.studies.v3_study`."""
import sys

from experiments.studies.v3_study import main

if __name__ == "__main__":
    sys.exit(main())
