"""python -m utils.train, with a fault planted on one rank for tests/test_distributed.py:
PLANT_RANK=r and PLANT_SIGTERM_AT=s (that rank sends itself SIGTERM as step s begins, as a
scheduler would) or PLANT_CRASH_AT=s (that rank raises as step s begins)."""

import os
import signal
import sys

import utils.distributed
import utils.train


class PlantedFault(utils.distributed.DistributedTrainer):
    def batch(self, step):
        if self.rank == int(os.environ.get("PLANT_RANK", -1)):
            if step == int(os.environ.get("PLANT_SIGTERM_AT", -1)):
                os.kill(os.getpid(), signal.SIGTERM)
            if step == int(os.environ.get("PLANT_CRASH_AT", -1)):
                raise RuntimeError(f"planted crash on rank {self.rank} at step {step}")
        return super().batch(step)


utils.distributed.DistributedTrainer = PlantedFault
sys.exit(utils.train.main())
