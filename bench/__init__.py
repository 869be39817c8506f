"""chatd's benchmark harness: a C epoll load generator, scenarios, chatd and ngIRCd runners.

Usage: `python -m bench run --scenarios fanout1000,latency --targets chatd,ngircd --runs 3`
(bench/README.md).
"""
