"""`srnas report` on small studies built by hand (no training), and the study table."""

from __future__ import annotations

import io
import json
import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from srnas.arch.cost import count_mult_adds, count_params
from srnas.cli import main
from srnas.results.frame import pareto_mask, select_trials, study_frame
from srnas.results.report import published_points, write_report
from srnas.results.report_figures import FIGURE_TITLES
from srnas.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

SCHEDULE = {"name": "tiny", "updates": 300, "batch": 16, "patch": 24, "val_images": 4,
            "fidelity_id": "u300-b16-p24-lr0.002-step-test"}


class _Recorder:
    """Stands in for an Optuna trial: random choices, remembering each parameter's choices."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, CategoricalDistribution] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.rng.choice(list(choices))
        self.params[name] = value
        self.distributions[name] = CategoricalDistribution(list(choices))
        return value


def synthetic_psnr(params: int, res_scale: float, rng: random.Random) -> float:
    """A made-up score that grows with log(params) and prefers res_scale 1.0."""
    return 30.6 + 0.4 * math.log10(params / 1e3) + (0.3 if res_scale == 1.0 else 0.0) + rng.gauss(0, 0.02)


def build_study(root: Path, name: str = "hand", *, n_complete: int = 8, objectives: Sequence[str] = ("psnr",),
                extra_states: bool = True, seed: int = 0, protocol: str = "benchmark") -> optuna.Study:
    """A finished study in ``root/<name>/study.db`` with the attributes `srnas search` records.

    ``n_complete`` COMPLETE trials of the tiny space (distinct architectures); with
    ``extra_states`` also one FAILED, one infeasible (COMPLETE with a placeholder value and its
    constraint value, as `srnas search` records it) and one pruner-PRUNED trial.
    """
    space = SearchSpace.load("tiny")
    (root / name).mkdir(parents=True, exist_ok=True)
    directions = ["maximize" if o == "psnr" else "minimize" for o in objectives]
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{root / name / 'study.db'}", directions=directions)
    for key, value in {"space": "tiny", "objectives": list(objectives), "fidelity": SCHEDULE["fidelity_id"],
                       "data": "demo", "scales": [2], "schedule": SCHEDULE, "srnas": 1}.items():
        study.set_user_attr(key, value)
    rng = random.Random(seed)
    seen: set[str] = set()
    trials = []
    while len(trials) < n_complete + (3 if extra_states else 0):
        rec = _Recorder(rng)
        cfg = space.sample(rec)
        if cfg.arch_id in seen:
            continue
        seen.add(cfg.arch_id)
        params = count_params(cfg)
        attrs: dict[str, Any] = {"config": cfg.to_dict(), "arch_id": cfg.arch_id, "params": params,
                                 "mult_adds": count_mult_adds(cfg), "activation_mb": 10.0, "space": "tiny",
                                 "engine": "optuna", "fidelity": SCHEDULE["fidelity_id"], "schedule": "tiny",
                                 "seed": len(trials), "device": "cpu"}
        k = len(trials)
        psnr = synthetic_psnr(params, cfg.res_scale, rng)
        curve = [[u, psnr - 0.5 * (300 - u) / 300] for u in (50, 100, 150, 200, 250, 300)]
        if k < n_complete:
            attrs.update({"psnr": psnr, "ssim": 0.9, "protocol": protocol, "bicubic_psnr": 30.6,
                          "psnr_curve": curve, "wall_time_s": 5.0, "val_images": 3})
            values = [psnr] + [float(params if o == "params" else attrs["mult_adds"]) for o in objectives[1:]]
            t = create_trial(state=TrialState.COMPLETE, values=values, params=rec.params,
                             distributions=rec.distributions, user_attrs=attrs,
                             intermediate_values={u: p for u, p in curve})
        elif k == n_complete:
            attrs["error"] = "TrainingError: non-finite loss at update 12"
            t = create_trial(state=TrialState.FAIL, params=rec.params, distributions=rec.distributions, user_attrs=attrs)
        elif k == n_complete + 1:
            attrs["infeasible"] = "max_params exceeded by 1,000"
            t = create_trial(state=TrialState.COMPLETE, values=[0.0] * len(objectives), params=rec.params,
                             distributions=rec.distributions, user_attrs=attrs, system_attrs={"constraints": [1000.0]})
        else:
            attrs.update({"psnr_curve": curve[:2], "psnr": curve[1][1]})
            t = create_trial(state=TrialState.PRUNED, params=rec.params, distributions=rec.distributions,
                             user_attrs=attrs, intermediate_values={u: p for u, p in curve[:2]})
        trials.append(t)
        study.add_trial(t)
    return study


@pytest.fixture()
def trials_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "trials"
    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(root))
    return root


def _div_ids(text: str) -> set[str]:
    return set(re.findall(r"<div id=\"([^\"]+)\"", text))


def test_report_has_named_figures_and_no_external_scripts(trials_dir: Path, capsys: pytest.CaptureFixture) -> None:
    study = build_study(trials_dir, "hand")
    assert main(["report", "--study", "hand"]) == 0
    html_file = trials_dir / "hand" / "report.html"
    text = html_file.read_text(encoding="utf-8")
    ids = _div_ids(text)
    for div_id in ("fig-history", "fig-pareto-params", "fig-pareto-macs", "fig-importance", "fig-res-scale", "fig-curves"):
        assert div_id in ids, div_id
        assert FIGURE_TITLES[div_id] in text, div_id
    assert "id='table-best-trials'" in text and "sortable" in text
    # The images the trials were scored on (demo: 3), not the schedule's val_images (4).
    assert "LR patch 24, 3 validation image(s)" in text
    # Offline: no script loaded from anywhere, and plotly.js inline exactly once.
    assert not re.search(r"<script[^>]*\bsrc=", text, flags=re.I)
    assert text.count("* plotly.js v") == 1
    # Fixed parameters (one value in every trial) get no bar: only the varied ones are ranked.
    from srnas.results.report_figures import _importances

    importances, _ = _importances(study)
    frame = study_frame(study)
    assert importances and all(len(set(frame[f"param_{name}"].dropna())) > 1 for name in importances)
    # res_scale is varied in the tiny space: its importance and the per-value table are there.
    assert "id='res-scale-importance'" in text and "id='table-res-scale'" in text
    # The demo data is not a published set: published models are not drawn, and the report says so.
    assert "published (reference)" not in text and "are not drawn" in text
    # No retrained models yet: a clear note instead of the retrained table and the scatter.
    assert "id='retrained-note'" in text and "fig-proxy-vs-retrained" not in ids
    out = capsys.readouterr().out
    assert "report:" in out and "Static PNGs" in out  # kaleido/Chromium absent here, or PNGs written
    # trials.csv next to the HTML: one row per trial, infeasible and failed ones included.
    import pandas as pd

    table = pd.read_csv(trials_dir / "hand" / "trials.csv")
    assert len(table) == len(study.trials)
    assert set(table["state"]) == {"COMPLETE", "FAIL", "PRUNED"}
    best = table[table["state"] == "COMPLETE"].dropna(subset=["psnr"]).sort_values("psnr").iloc[-1]
    assert best["psnr"] == pytest.approx(max(t.values[0] for t in study.trials if t.state == TrialState.COMPLETE
                                             and "infeasible" not in t.user_attrs))


def test_report_excludes_infeasible_trials_from_plots(trials_dir: Path) -> None:
    study = build_study(trials_dir, "hand")
    frame = study_frame(study)
    infeasible = frame[frame["infeasible"].notna()]
    assert len(infeasible) == 1 and not infeasible["trained"].any()
    pruned = frame[(frame["state"] == "PRUNED") & frame["infeasible"].isna()]
    assert pruned["trained"].all() and pruned["psnr"].notna().all()
    out = trials_dir / "elsewhere" / "r.html"
    result = write_report("hand", out=out, static_images=False)
    assert result.html == out and (out.parent / "trials.csv").is_file()
    number = int(infeasible["number"].iloc[0])
    # The history and curve figures hold the trained trials only (the failed one has no score).
    xs = {int(x) for trace in result.figures["fig-history"].data if trace.mode == "markers" for x in trace.x}
    assert number not in xs and xs == set(frame[frame["trained"]]["number"])
    assert len(result.figures["fig-curves"].data) == int(frame["trained"].sum())
    for div_id in ("fig-pareto-params", "fig-pareto-macs"):
        numbers = {int(t.split()[0][1:]) for trace in result.figures[div_id].data for t in trace.text}
        assert numbers and numbers <= set(frame[frame["state"] == "COMPLETE"]["number"])
    # One count of trained architectures everywhere: the summary, `srnas studies`, the budget.
    from srnas.outcomes import study_counts
    from srnas.results.overview import study_overview

    counts, overview = study_counts(study), study_overview(study)
    assert result.n_trained == counts.finished == overview["trained"]
    html = result.html.read_text()
    assert (f"{counts.finished} distinct architectures trained ({overview['complete']} complete, "
            f"{counts.pruned} pruned)") in html and "1 infeasible (never trained)" in html


def test_report_with_retrained_results_shows_kendall_tau(trials_dir: Path) -> None:
    study = build_study(trials_dir, "hand")
    complete = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.values[0])[:3]
    for rank, t in enumerate(complete):
        folder = trials_dir / "hand" / "retrain" / t.user_attrs["arch_id"]
        folder.mkdir(parents=True)
        from srnas.arch.config import ArchConfig

        (folder / "config.yaml").write_text(ArchConfig.from_dict(t.user_attrs["config"]).to_yaml())
        # Retrained ranks agree with the proxy for the best two and swap the third: tau = 1/3.
        psnr = {0: 34.0, 1: 33.5, 2: 33.8}[rank]
        (folder / "metrics.json").write_text(json.dumps({
            "arch_id": t.user_attrs["arch_id"], "final": {"psnr": psnr, "ssim": 0.93, "protocol": "benchmark",
                                                          "scale": 2, "val_set": "Set5"},
            "bicubic_psnr": 33.66, "updates": 300000, "schedule": {"name": "paper", "fidelity_id": "u300000"}}))
    assert main(["report", "--study", "hand", "--no-png"]) == 0
    text = (trials_dir / "hand" / "report.html").read_text(encoding="utf-8")
    assert "fig-proxy-vs-retrained" in _div_ids(text)
    assert "Kendall tau = 0.333, n = 3" in text
    assert "id='table-retrained'" in text
    # Retrained on Set5 x2 with the benchmark protocol: the published Set5 numbers sit beside them.
    assert "EDSR-baseline 37.99" in text


def test_published_points_only_when_protocol_matches() -> None:
    assert published_points("benchmark", 2, None) == []            # demo / folder validation: no match
    assert published_points("benchmark", 3, "Set5") == []          # no published x3 benchmark rows on record
    set5 = {p["model"]: p for p in published_points("benchmark", 2, "Set5")}
    assert set5["EDSR-baseline"]["psnr"] == 37.99 and set5["EDSR-baseline"]["params"] == pytest.approx(1.37e6)
    assert set5["EDSR-baseline"]["mult_adds"] == pytest.approx(316.3e9)
    div2k = {p["model"]: p for p in published_points("div2k", 2, None)}
    assert div2k["EDSR-baseline"]["psnr"] == 34.61 and div2k["EDSR-baseline"]["params"] == 1_369_859


def test_div2k_study_draws_published_reference_points(trials_dir: Path) -> None:
    build_study(trials_dir, "div", protocol="div2k")
    result = write_report("div", static_images=False)
    for div_id in ("fig-pareto-params", "fig-pareto-macs"):
        [published] = [t for t in result.figures[div_id].data if t.name == "published (reference)"]
        assert list(published.text) == ["EDSR-baseline", "EDSR", "MDSR"]
        assert list(published.y) == [34.61, 35.03, 34.92]
    text = result.html.read_text(encoding="utf-8")
    assert "Published models drawn as reference points" in text and "DIV2K 0801-0900 x2" in text


def test_static_png_note_without_chromium(trials_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    import srnas.results.report_images as report_images

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(report_images.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "kaleido" else real_find_spec(name, *a))
    monkeypatch.setattr(report_images.shutil, "which", lambda name: None)
    build_study(trials_dir, "hand")
    assert main(["report", "--study", "hand"]) == 0
    out = capsys.readouterr().out
    assert "kaleido is installed but no Chromium was found" in out
    text = (trials_dir / "hand" / "report.html").read_text(encoding="utf-8")
    assert "no Chromium was found" in text and not list((trials_dir / "hand").glob("*.png"))


def test_pareto_mask_and_selection(trials_dir: Path) -> None:
    assert pareto_mask([1, 2, 3, 2], [30.0, 31.0, 30.5, 30.0]) == [True, True, False, False]
    study = build_study(trials_dir, "mo", objectives=("psnr", "params"))
    front = select_trials(study, pareto=True)
    assert front and len(front) == len({t.user_attrs["arch_id"] for t in front})
    best = select_trials(study, top=3)
    assert [t.values[0] for t in best] == sorted((t.values[0] for t in best), reverse=True)


def test_report_on_empty_study(trials_dir: Path) -> None:
    (trials_dir / "empty").mkdir(parents=True)
    optuna.create_study(study_name="empty", storage=f"sqlite:///{trials_dir / 'empty' / 'study.db'}",
                        direction="maximize")
    assert main(["report", "--study", "empty", "--no-png"]) == 0
    text = (trials_dir / "empty" / "report.html").read_text(encoding="utf-8")
    assert "No complete trials yet." in text
    # A study whose only trials trained nothing (failed before their config was recorded, or running).
    study = optuna.load_study(study_name="empty", storage=f"sqlite:///{trials_dir / 'empty' / 'study.db'}")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"error": "killed"}))
    study.ask()
    assert main(["report", "--study", "empty", "--no-png"]) == 0
    assert "No complete trials yet." in (trials_dir / "empty" / "report.html").read_text(encoding="utf-8")


def test_report_unknown_study_is_one_line(trials_dir: Path, capsys: pytest.CaptureFixture) -> None:
    build_study(trials_dir, "hand")
    assert main(["report", "--study", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no study 'nope'" in err and "hand" in err


def _png_strip(seed: int) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (24, 80, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_proxy_trials_say_ssim_is_not_scored() -> None:
    from srnas.results.report import _cell

    assert _cell("ssim", None) == ("not scored", None) and _cell("ssim", float("nan"))[0] == "not scored"
    assert _cell("ssim", 0.91234)[0] == "0.9123" and _cell("params", None) == ("-", None)


def test_report_uses_human_units_names_fidelities_and_cautions_on_few_trials(trials_dir: Path) -> None:
    build_study(trials_dir, "few", n_complete=8)
    text = write_report("few", static_images=False).html.read_text(encoding="utf-8")
    table = text.split("id='table-best-trials'")[1].split("</table>")[0]
    assert not re.search(r"\d{1,3}(,\d{3}){2,}", table)  # no 28,668,211,200
    assert re.search(r"data-v='\d+(\.0)?'>\d+(\.\d+)?K<", table) and re.search(r">\d+\.\d\dG<", table)
    assert "<th>proxy</th>" in table and ">tiny<" in table and SCHEDULE["fidelity_id"] not in table
    assert ">5s<" in table and "10 MB" in table
    assert "id='importance-caution'" in text and "rest on 8 complete trials" in text
    build_study(trials_dir, "many", n_complete=24, seed=1)
    text = write_report("many", static_images=False).html.read_text(encoding="utf-8")
    assert "id='fig-importance'" in text.replace('"', "'") and "importance-caution" not in text


def test_report_embeds_the_best_trials_samples(trials_dir: Path) -> None:
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    source = build_study(trials_dir, "strips-source", n_complete=4)
    store = trials_dir / "strips" / "artifacts"
    store.mkdir(parents=True)
    complete = sorted((t for t in source.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.values[0])
    study = optuna.create_study(study_name="strips", storage=f"sqlite:///{trials_dir / 'strips' / 'study.db'}",
                                direction="maximize")
    for key, value in source.user_attrs.items():
        study.set_user_attr(key, value)
    strips = {}
    for i, t in enumerate(complete):
        png = trials_dir / f"s{i}.png"
        png.write_bytes(_png_strip(i))
        # A storage that names a path instead of an artifact id is not followed (the last trial).
        artifact = "../../study.db" if i == 3 else upload_artifact(
            artifact_store=FileSystemArtifactStore(str(store)), file_path=str(png), study_or_trial=study,
            mimetype="image/png")
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=t.values, params=t.params,
                                     distributions=t.distributions,
                                     user_attrs={**t.user_attrs, "sample_artifact": artifact}))
        strips[study.trials[-1].number] = png.read_bytes()
    complete = sorted(study.trials, key=lambda t: -t.values[0])
    text = write_report("strips", static_images=False, samples=2).html.read_text(encoding="utf-8")
    import base64

    shown = re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)' alt='trial (\d+)", text)
    assert [int(n) for _, n in shown] == [t.number for t in complete[:2]]  # the best two, best first
    assert all(base64.b64decode(data) == strips[int(n)] for data, n in shown)
    assert not re.search(r"<img[^>]+src=['\"](?!data:)", text)  # nothing outside the file
    text = write_report("strips", static_images=False, samples=0).html.read_text(encoding="utf-8")
    assert "<img src='data:" not in text and "id='samples-note'" in text


def test_report_output_path_under_a_file_is_one_line(trials_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    build_study(trials_dir, "hand")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    assert main(["report", "--study", "hand", "-o", str(blocker / "sub" / "report.html"), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srnas: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert f"{blocker} is a file, not a folder" in err
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["report", "--study", "hand", "-o", str(folder), "--no-png"]) == 0  # a folder: report.html in it
    assert (folder / "report.html").is_file() and (folder / "trials.csv").is_file()
    assert main(["report", "--study", "hand", "-o", f"{tmp_path / 'new'}/", "--no-png"]) == 0  # "DIR/": a new folder
    assert (tmp_path / "new" / "report.html").is_file()


def test_best_table_folds_repeats_into_their_architecture() -> None:
    """Older studies recorded repeats COMPLETE: one row per architecture, with the count."""
    import optuna

    from srnas.arch import ArchConfig
    from srnas.results.report import _best_table

    study = optuna.create_study(direction="maximize")
    cfg = ArchConfig(n_resblocks=2, n_feats=8, global_skip="bicubic")
    attrs = {"config": cfg.to_dict(), "arch_id": cfg.arch_id, "psnr": 31.0, "params": 1000}
    study.add_trial(optuna.trial.create_trial(value=31.0, user_attrs=attrs))
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=31.0, user_attrs={**attrs, "reused_from": 0}))
    table = _best_table(study_frame(study), 20)
    assert table.count("<tr>") == 1 + 1  # the header and one architecture
    assert "repeated proposals" in table and "data-v='2'>2<" in table
