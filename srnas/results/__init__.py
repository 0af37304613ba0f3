"""Results: a study as a table, the HTML report, export of found architectures, and the
proxy-fidelity study (with zero-cost baselines).

Names are re-exported lazily: ``import srnas.results`` imports neither torch, plotly nor onnx.

>>> from srnas.results import EXPORT_FORMATS
>>> EXPORT_FORMATS
('yaml', 'json', 'pt', 'safetensors', 'onnx')
"""

from __future__ import annotations

from srnas._lazy import lazy_exports

_EXPORTS = {
    "study_frame": "srnas.results.frame",
    "retrained_results": "srnas.results.frame",
    "select_trials": "srnas.results.frame",
    "pareto_mask": "srnas.results.frame",
    "SelectionError": "srnas.results.frame",
    "write_report": "srnas.results.report",
    "published_points": "srnas.results.report_figures",
    "ReportResult": "srnas.results.report",
    "FIGURE_TITLES": "srnas.results.report_figures",
    "export_study": "srnas.results.export",
    "export_onnx": "srnas.results.export",
    "load_exported": "srnas.results.export",
    "ExportedArch": "srnas.results.export",
    "ExportError": "srnas.results.export",
    "EXPORT_FORMATS": "srnas.results.export",
    "study_overview": "srnas.results.overview",
    "list_studies": "srnas.results.overview",
    "run_fidelity": "srnas.results.fidelity.study",
    "stratified_sample": "srnas.results.fidelity.sample",
    "parse_fidelity": "srnas.results.fidelity.study",
    "FidelityResult": "srnas.results.fidelity.study",
    "synflow": "srnas.results.zero_cost",
    "grad_norm": "srnas.results.zero_cost",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
