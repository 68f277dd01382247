"""`python -m experiments.v3_power`, kept at its old path: the study is `experiments.studies.v3_power`."""
import sys

from experiments.studies.v3_power import main

if __name__ == "__main__":
    sys.exit(main())
