"""`python -m experiments.v6_power`, kept at its old path: the study is `experiments.studies.v6_power`."""
import sys

from experiments.studies.v6_power import main

if __name__ == "__main__":
    sys.exit(main())
