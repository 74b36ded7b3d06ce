"""Train functions for tests that call Ray Train directly. Made inside a function, so that cloudpickle sends them
by value: Ray's worker processes cannot import the tests' modules."""


def report_pid_fn():
    """A train function: every rank reports its rank; rank 0's checkpoint holds a file `pid` with its process id."""

    def report_pid(config: dict) -> None:
        import os
        import tempfile

        import ray.train

        rank = ray.train.get_context().get_world_rank()
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "pid"), "w") as f:
                f.write(str(os.getpid()))
            ray.train.report({"rank": rank}, checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)

    return report_pid
