"""`python -m experiments.phi_power`, kept at its old path: the study is `experiments.studies.phi_power`."""
import sys

from experiments.studies.phi_power import main

if __name__ == "__main__":
    sys.exit(main())
