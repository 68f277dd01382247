"""`python -m experiments.v2_filter_study`: the study is `experiments.studies.v2_filter_study`."""
import sys

from experiments.studies.v2_filter_study import main

if __name__ == "__main__":
    sys.exit(main())
