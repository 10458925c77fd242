"""Loading a task: parse task.yaml, hash-check and read the proposal bank and the reference."""

from benchmarks import TIMER, gate_mode, quick, shipped_tasks
from cgbg_bench.task import load_task


class LoadTask:
    params = [quick(shipped_tasks(), ["mueller-brown"])]  # quick: pinned, as speed_baseline.json
    param_names = ["task"]
    timer = TIMER

    def setup(self, task):
        gate_mode()
        load_task(task).load_proposal()  # warm the page cache: time parsing and hashing, not the disk

    def time_load(self, task):
        t = load_task(task)
        t.load_proposal()
        t.load_reference()
