"""`python -m experiments.zero_cost_study`, kept at its old path: the study is `experiments.studies.zero_cost_study`."""
import sys

from experiments.studies.zero_cost_study import main

if __name__ == "__main__":
    sys.exit(main())
