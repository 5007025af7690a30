"""Command lines (python -m utils.train, utils.export, utils.exercises): argparse, with a bad
option told in one line."""

import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, with a bad option told in one line, not after its usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
