"""CaCT fine-tuning epoch time against a cross-entropy fine-tuning epoch on the same net and data.

The protocol of ``bench_cact`` (its problems, pre-training and fine-tuning settings), reduced to the
one number it prints as "CaCT-ALM fine-tune epoch / CE-ft epoch": per problem and seed one
cross-entropy model is pre-trained, then copies of it are fine-tuned with cross-entropy
(``objective="ce"``) and with CaCT-ALM (the estimator's defaults), in alternation (CE first on even
repeats, CaCT first on odd ones) so that a change of load on a shared machine hits both. Each fit's
epoch time is the median of its ``history_`` ``dur`` (skorch's epoch timer: the training batches,
the validation pass and the epoch-end callbacks, among them CaCT's multiplier update); each repeat
gives one ratio, and the median over repeats (and seeds) is reported with every repeat's value.
The same ratio is also reported in CPU time of the training thread per epoch (``time.thread_time``
between skorch's epoch-timer hooks, recorded as ``cpu_dur``): on a shared machine it leaves out
the time the process waits for a core, which wall time does not. ``dur`` ends at the epoch
timer's own ``on_epoch_end`` hook, before the callbacks after it (skorch's validation accuracy
and log table, the epoch selection); the third ratio times the whole epoch, every hook included
(``full_dur``).

Usage::

    python -m benchmarks cact-epoch                  # 2 seeds x 7 repeats, both problems
    python -m benchmarks cact-epoch --quick          # 1 seed x 3 repeats
    python -m benchmarks cact-epoch --problems synth50-lt --repeats 11 --epochs 30

One torch thread (the shared 2-core machine).
"""

import argparse
import time
import warnings

import numpy as np

from .bench_cact import load_problem


def _record_full_epoch_time():
    """Record each epoch's wall time from its first ``on_epoch_begin`` hook to the end of its
    last ``on_epoch_end`` hook (``full_dur``): skorch's ``dur`` stops at the epoch timer's own
    hook, before the callbacks that follow it (validation accuracy, the log table, the epoch
    selection of fine-tuned objectives)."""
    from skorch import NeuralNet

    if getattr(NeuralNet, "_full_patched", False):
        return
    notify = NeuralNet.notify

    def timed_notify(self, method_name, **cb_kwargs):
        if method_name == "on_epoch_begin":
            self._full_start = time.perf_counter()
        notify(self, method_name, **cb_kwargs)
        if method_name == "on_epoch_end":
            self.history.record("full_dur", time.perf_counter() - self._full_start)

    NeuralNet.notify = timed_notify
    NeuralNet._full_patched = True


def _record_cpu_time():
    """Make skorch's EpochTimer also record the thread's CPU time per epoch (``cpu_dur``)."""
    from skorch.callbacks import EpochTimer

    _record_full_epoch_time()
    if getattr(EpochTimer, "_cpu_patched", False):
        return
    begin, end = EpochTimer.on_epoch_begin, EpochTimer.on_epoch_end

    def on_epoch_begin(self, net, **kwargs):
        self._cpu_start = time.thread_time()
        begin(self, net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        end(self, net, **kwargs)
        net.history.record("cpu_dur", time.thread_time() - self._cpu_start)

    EpochTimer.on_epoch_begin, EpochTimer.on_epoch_end = on_epoch_begin, on_epoch_end
    EpochTimer._cpu_patched = True


def fit_epoch_time(CaCTClassifier, start, X, y, fit_kw, common, epochs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = CaCTClassifier(
            module=start, pretrain_epochs=0, max_epochs=epochs, **common, **kw
        ).fit(X, y, **fit_kw)
    return tuple(float(np.median([h[key] for h in clf.history_]))
                 for key in ("dur", "cpu_dur", "full_dur"))


def run(problems, seeds, repeats, epochs):
    import torch

    from sklearn_conformal.classification import CaCTClassifier

    torch.set_num_threads(1)
    _record_cpu_time()
    out = {}
    for problem in problems:
        ratios, cpu_ratios, full_ratios, ce_times, cact_times = [], [], [], [], []
        ce_full, cact_full = [], []
        for seed in seeds:
            (X, y), val, cal, _, train = load_problem(problem, seed)
            common = dict(
                batch_size=500, random_state=seed,
                hidden_layer_sizes=train["hidden_layer_sizes"], lr=train["lr"],
            )
            fit_kw = dict(validation_data=val, calibration_data=cal)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                base = CaCTClassifier(
                    objective="ce", pretrain_epochs=train["pretrain_epochs"], max_epochs=0,
                    **common,
                ).fit(X, y, **fit_kw)
            start = base.net_.module_
            n_ep = epochs or train["max_epochs"]
            # one untimed fit of each first (lazy imports, first-call allocations)
            for obj in ("ce", "cact"):
                fit_epoch_time(CaCTClassifier, start, X, y, fit_kw, common, 2, objective=obj)
            for r in range(repeats):
                order = ("ce", "cact") if r % 2 == 0 else ("cact", "ce")
                t = {}
                for obj in order:
                    t[obj] = fit_epoch_time(
                        CaCTClassifier, start, X, y, fit_kw, common, n_ep, objective=obj
                    )
                ce_times.append(t["ce"][0])
                cact_times.append(t["cact"][0])
                ratios.append(t["cact"][0] / t["ce"][0])
                cpu_ratios.append(t["cact"][1] / t["ce"][1])
                full_ratios.append(t["cact"][2] / t["ce"][2])
                ce_full.append(t["ce"][2])
                cact_full.append(t["cact"][2])
        out[problem] = dict(ratios=ratios, cpu_ratios=cpu_ratios, full_ratios=full_ratios,
                            ce=ce_times, cact=cact_times)
        print(
            f"{problem}: CaCT-ALM fine-tune epoch / CE-ft epoch: median {np.median(ratios):.3f} "
            f"(per repeat {np.round(ratios, 3).tolist()}); "
            f"epoch ms CE {1e3 * np.median(ce_times):.2f}, CaCT {1e3 * np.median(cact_times):.2f}\n"
            f"{problem}: same in thread CPU time: median {np.median(cpu_ratios):.3f} "
            f"(per repeat {np.round(cpu_ratios, 3).tolist()})\n"
            f"{problem}: whole epoch (every epoch-end callback): median "
            f"{np.median(full_ratios):.3f} (per repeat {np.round(full_ratios, 3).tolist()}); "
            f"epoch ms CE {1e3 * np.median(ce_full):.2f}, CaCT {1e3 * np.median(cact_full):.2f}",
            flush=True,
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed x 3 repeats")
    parser.add_argument("--problems", default="synth50-lt,digits-lt")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs per fit "
                        "(0: the problem's max_epochs in bench_cact)")
    args = parser.parse_args(argv)
    seeds, repeats = (1, 3) if args.quick else (args.seeds, args.repeats)
    tic = time.time()
    run(args.problems.split(","), list(range(seeds)), repeats, args.epochs)
    print(f"total {time.time() - tic:.0f}s")


if __name__ == "__main__":
    main()
