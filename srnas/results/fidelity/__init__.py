"""The proxy-fidelity study: does a cheap score rank architectures as a longer training does?

One job per module:

- `sample`: which architectures (stratified over the space's dimensions, distinct parameter
  counts) and space variants with one dimension fixed;
- `stats`: Kendall tau-b over chosen pairs, bootstrap and paired-bootstrap intervals;
- `runs`: the resumable run log (``runs.csv``) and the training runs in worker processes;
- `analysis`: designs, baselines, noise ceiling, tau per evaluation point, the rule for defaults;
- `plots`: the HTML page;
- `study`: `run_fidelity`, the orchestration behind ``srnas fidelity``.

Names are re-exported lazily (plotly loads with `study`, torch only when a study trains).
"""

from __future__ import annotations

from srnas._lazy import lazy_exports

_EXPORTS = {
    "run_fidelity": "srnas.results.fidelity.study",
    "FidelityResult": "srnas.results.fidelity.study",
    "FidelityError": "srnas.results.fidelity.study",
    "parse_fidelity": "srnas.results.fidelity.study",
    "parse_fix": "srnas.results.fidelity.study",
    "stratified_sample": "srnas.results.fidelity.sample",
    "sample_spread": "srnas.results.fidelity.sample",
    "kendall_tau_b": "srnas.results.fidelity.stats",
    "paired_difference": "srnas.results.fidelity.stats",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
