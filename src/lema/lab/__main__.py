"""`python -m lema.lab`: the lab without the rest of lema's dependencies (torch, transformers, numpy, scipy,
matplotlib, pydantic, pyyaml), e.g. on a GPU box."""

import argparse
import sys

from lema.lab.run import add_arguments, main_from_args

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m lema.lab", description=__doc__)
    add_arguments(parser)
    sys.exit(main_from_args(parser.parse_args(), "python -m lema.lab"))
