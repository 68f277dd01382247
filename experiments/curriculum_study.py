"""`python -m experiments.curriculum_study`, kept at its old path: the study is `experiments.studies.curriculum_study`."""
import sys

from experiments.studies.curriculum_study import main

if __name__ == "__main__":
    sys.exit(main())
