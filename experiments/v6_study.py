"""`python -m experiments.v6_study`, kept at its old path: the study is `experiments.studies.v6_study`."""
import sys

from experiments.studies.v6_study import main

if __name__ == "__main__":
    sys.exit(main())
