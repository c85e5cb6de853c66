"""``python -m benchmarks NAME [--quick] [args...]``: run one benchmark by name.

``python -m benchmarks --list`` lists them; ``python -m benchmarks NAME --help`` shows the
options of one. Every benchmark takes ``--quick`` (a small smoke run).
"""

import importlib
import sys

# name -> (module in this package, one line)
BENCHMARKS = {
    "split-mapie": ("bench_split_mapie", "predict_set throughput against MAPIE (needs mapie)"),
    "cross-conformal": ("bench_cross_conformal", "CV+ vs split CP: length / coverage per n, fit time"),
    "speedcp": ("bench_speedcp", "SpeedCP admixture study, scaling in n, time per point vs CondConf"),
    "speedcp-memory": ("bench_speedcp_memory", "peak memory of SpeedCPRegressor.fit vs n_cal"),
    "speedcp-scaling": ("bench_speedcp_scaling", "SpeedCP fit, S-path and peak memory at n_cal up to 20,000 exact and 100,000 low-rank"),
    "first-call": ("bench_first_call", "cold / warm time of the import and first fits (numba)"),
    "cact": ("bench_cact", "CaCT against CE / ConfTr / CALS on long-tailed data (torch)"),
    "cact-epoch": ("bench_cact_epoch", "CaCT fine-tuning epoch time / cross-entropy epoch time"),
    "cact-grid": ("bench_cact_grid", "CaCT vs CE-ft / CE-cb / focal / tuned ConfTr on sampled long-tailed cells"),
    "cocp-synthetic": ("bench_cocp_synthetic", "CoCP Table 1 / Table 4 on the synthetic families"),
    "cocp-real": ("bench_cocp_real", "CoCP Table 3 on bike / bio / homes ($SKCONF_DATA)"),
    "cocp-fit-time": ("bench_cocp_fit_time", "CoCPRegressor fit time at n = 20,000"),
    "cocp-beta": ("bench_cocp_beta_finite_sample", "CoCP's beta: finite-sample fixed point at one x"),
    "weighted-conformal": ("bench_weighted_conformal", "split vs weighted CP under covariate shift"),
}


def _list():
    width = max(map(len, BENCHMARKS))
    for name, (_, line) in BENCHMARKS.items():
        print(f"{name:<{width}}  {line}")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n")
        _list()
        return 0 if argv else 2
    if argv[0] == "--list":
        _list()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__ or 'benchmarks'}.{BENCHMARKS[name][0]}")
    sys.argv = [f"python -m benchmarks {name}"] + rest
    module.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
