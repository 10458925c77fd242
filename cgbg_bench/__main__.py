from cgbg_bench.cli import entry_point

entry_point()
