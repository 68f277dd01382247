"""`python -m experiments.proxy_score`, kept at its old path: the study is `experiments.studies.proxy_score`."""
import sys

from experiments.studies.proxy_score import main

if __name__ == "__main__":
    sys.exit(main())
