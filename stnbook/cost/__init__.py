"""What a spatial transformer costs: the benchmarks (bench.py, bench_distortions.py) and the chapter's report."""
