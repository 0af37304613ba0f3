"""The model card of an exported architecture (`srnas.results.export`): Hugging Face front matter
(license, library_name, tags, datasets, pipeline_tag, a model-index with the retrained PSNR/SSIM
per scale, the protocol in each metric's name and args), a usage snippet that runs as written,
the config, costs, proxy and retrained metrics with their protocol, and provenance.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from srnas.arch.config import ArchConfig

#: ``license`` in the model card's front matter: the srnas license. Edit the card when your
#: weights or training data carry another (DIV2K is for academic research).
CARD_LICENSE = "mit"
#: What each evaluation protocol measures on (srnas.metrics): channel, border crop in pixels.
_PROTOCOL_REGION = {"benchmark": ("Y channel (BT.601)", 0), "div2k": ("RGB", 6)}

def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _trained_on_div2k(protocol: str | None, val_set: str | None) -> bool:
    # Only DIV2K data yields the "div2k" protocol and a validation set named DIV2K (srnas.data).
    return protocol == "div2k" or str(val_set or "").upper() == "DIV2K"


def _metric(kind: str, value: float, scale: int, protocol: str | None) -> dict[str, Any]:
    """One model-index metric; its name and ``args`` say the protocol it was measured with."""
    if protocol in _PROTOCOL_REGION:
        channel, extra = _PROTOCOL_REGION[protocol]
        crop = scale + extra
        name = f"{kind.upper()} x{scale} ({protocol} protocol: {channel}, {crop} px border crop)"
        args: dict[str, Any] = {"protocol": protocol, "scale": scale, "channel": channel, "border_crop": crop}
    else:
        name, args = f"{kind.upper()} x{scale} (protocol not recorded)", {"scale": scale}
    return {"type": kind, "value": round(float(value), 4), "name": name, "args": args}


def _model_index(meta: dict[str, Any], config: "ArchConfig") -> list[dict[str, Any]]:
    """Hugging Face ``model-index``: the retrained weights' PSNR/SSIM per scale."""
    r = meta["retrained"]
    protocol, val_set, data = r.get("protocol"), r.get("val_set"), r.get("data") or meta["data"]
    per_scale = {int(s): v for s, v in (r.get("per_scale") or {}).items()}
    if not per_scale:
        per_scale = {config.scales[0]: {"psnr": r["psnr"], "ssim": r.get("ssim")}} if len(config.scales) == 1 else {}
    div2k = _trained_on_div2k(protocol, val_set)
    dataset_type = "DIV2K" if div2k else ("srnas-demo" if data == "demo" else "custom")
    images = r.get("val_images")
    # The set's name says how many of its images the number covers (one name, one number).
    named = str(val_set or f"validation part of {data}") + (f" ({images} images)" if images else "")
    results = []
    for s, v in sorted(per_scale.items()):
        metrics = [_metric("psnr", v["psnr"], s, protocol)]
        if v.get("ssim") is not None:
            metrics.append(_metric("ssim", v["ssim"], s, protocol))
        results.append({
            "task": {"type": "image-to-image", "name": "Image Super-Resolution"},
            "dataset": {"type": dataset_type, "name": named, "config": f"bicubic_x{s}", "split": "validation"},
            "metrics": metrics,
        })
    return results


def _front_matter(meta: dict[str, Any], config: "ArchConfig") -> str:
    """The YAML block a Hugging Face model card starts with (license, tags, datasets, model-index)."""
    r = meta["retrained"] if meta["trained"] else None
    protocol = (r or meta["proxy"]).get("protocol")
    tags = ["super-resolution", "image-to-image", "srnas", "edsr", *(["mdsr"] if config.family == "mdsr" else []),
            "neural-architecture-search", *([] if meta["trained"] else ["untrained"])]
    card: dict[str, Any] = {"license": CARD_LICENSE, "library_name": "srnas", "pipeline_tag": "image-to-image",
                            "tags": tags}
    if _trained_on_div2k(protocol, (r or {}).get("val_set")):
        card["datasets"] = ["DIV2K"]
    results = _model_index(meta, config) if r is not None else []
    if results:
        card["model-index"] = [{"name": meta["arch_id"], "results": results}]
    return "---\n" + yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100) + "---\n\n"


def _usage(meta: dict[str, Any], config: "ArchConfig") -> list[str]:
    """The card's usage snippet: load the folder, run one forward pass."""
    folder, s = meta["arch_id"], config.scales[-1]
    call = "net(lr)" if len(config.scales) == 1 else f"net(lr, scale={s})  # any of {list(config.scales)}"
    if meta["trained"]:
        load = [f'net = srnas.load_exported("{folder}")  # architecture + weights, eval mode']
    else:
        load = ["# UNTRAINED export: no weights here, so this is the architecture with random weights",
                f'net = srnas.build_model(srnas.ArchConfig.load("{folder}/config.yaml")).eval()']
    return ["## Usage", "", "```python", "import torch", "import srnas", "", *load,
            f"lr = torch.rand(1, {config.n_colors}, 48, 48) * {config.rgb_range:g}  # N x C x H x W, "
            f"values 0..{config.rgb_range:g}",
            "with torch.no_grad():", f"    sr = {call}",
            f"print(sr.shape)  # N x C x {s}H x {s}W", "```", ""]


def model_card(meta: dict[str, Any], config: "ArchConfig") -> str:
    proxy, retrained = meta["proxy"], meta["retrained"]
    study, trial, arch_id = meta["study"], meta["trial"], meta["arch_id"]
    lines = [f"# {arch_id}: {config.describe()}", ""]
    if meta["trained"]:
        lines += [f"**Status: TRAINED.** Weights from `srnas retrain` ({retrained['schedule']}, "
                  f"{retrained['updates']} updates), copied from `{retrained['folder']}`.", ""]
    else:
        lines += ["**Status: UNTRAINED.** No retrained weights were found in "
                  f"`trials/{study}/retrain/{arch_id}/` (a search keeps no proxy weights), so this folder "
                  "holds no `.pt`/`.safetensors` weights."
                  + (" The ONNX file is named `*-untrained-random-init.onnx`: it carries random initial "
                     "weights, good for latency measurements, useless for images." if meta["onnx_files"] else ""),
                  "", f"Train it with: `srnas retrain --config config.yaml --study {study}` "
                  "(the paper schedule; add `--schedule proxy-short` for a quick run).", ""]
    lines += _usage(meta, config)
    lines += ["## Provenance", "",
              f"- study `{study}`, trial {trial} (state {meta['state']}), space `{meta['space']}`, "
              f"engine {meta['engine']}",
              f"- proxy fidelity `{proxy.get('fidelity')}` ({proxy.get('schedule')}), seed {proxy.get('seed')}",
              f"- exported {meta['exported_at']} by srnas {meta['srnas_version']}", "",
              "## Architecture", "", "```yaml", config.to_yaml().rstrip(), "```", "",
              "## Cost", "",
              f"- trainable parameters (mean shift excluded): {meta['params']:,}",
              *([f"- inference form (re-parameterisable convs fused; the ONNX files and `load_exported` "
                 f"use it): {meta['params_fused']:,} parameters"] if meta["params_fused"] != meta["params"] else []),
              *[f"- Mult-Adds x{s} (one forward pass, 1280x720 output): {m:,} ({m / 1e9:.2f}G)"
                + (f"; fused {meta['mult_adds_fused'][s]:,}" if meta["mult_adds_fused"][s] != m else "")
                for s, m in meta["mult_adds"].items()],
              f"- training activation memory (batch 16, LR patch 48, fp32): {meta['activation_mb']:.1f} MiB", "",
              "## Metrics", "",
              "| result | PSNR (dB) | SSIM | bicubic PSNR | protocol | validation set | schedule |",
              "|---|---|---|---|---|---|---|",
              f"| proxy (search) | {_fmt(proxy.get('psnr'))} | {_fmt(proxy.get('ssim'), 4)} | "
              f"{_fmt(proxy.get('bicubic_psnr'))} | {proxy.get('protocol') or '-'} | "
              f"validation part of data '{meta['data']}' | {proxy.get('schedule') or '-'} |"]
    if retrained is not None:
        lines.append(f"| retrained | {_fmt(retrained['psnr'])} | {_fmt(retrained['ssim'], 4)} | "
                     f"{_fmt(retrained['bicubic_psnr'])} | {retrained['protocol'] or '-'} | "
                     f"{retrained['val_set'] or '-'} | {retrained['schedule'] or '-'} ({retrained['updates']} updates) |")
    else:
        lines.append("| retrained | - | - | - | - | - | not retrained |")
    lines += ["", "Protocols: benchmark = Y channel (BT.601), crop = scale; div2k = RGB, crop = scale + 6. "
              "Proxy scores come from a short training and rank architectures; they are not final quality.", "",
              "## Files", ""]
    descriptions = {
        "config.yaml": "architecture: `srnas.ArchConfig.load('config.yaml')`, `srnas retrain --config config.yaml`",
        "config.json": "the same config as JSON (`srnas.ArchConfig.load('config.json')`)",
        "model.pt": "plain state dict (EDSR authors' key names): `srnas.load_exported(folder)`, or "
                    "`srnas.load_weights(srnas.build_model(cfg), 'model.pt')`",
        "model.safetensors": "the same weights as safetensors (`srnas.load_weights(net, 'model.safetensors')`)",
        "metadata.json": "everything on this card, machine-readable",
        "model_card.md": "this card",
    }
    for name in meta["files"]:
        if name.endswith(".onnx"):
            diff = meta["onnx_max_abs_diff"][name]
            n, h, w = meta["onnx_check_shape"]
            text = (f"input `lr` float32 N x {config.n_colors} x H x W, values 0..{config.rgb_range:g}; output `sr` "
                    f"N x {config.n_colors} x sH x sW; N, H, W dynamic (H, W >= 2). Checked with onnxruntime against "
                    f"PyTorch on a {n} x {config.n_colors} x {h} x {w} input: max |diff| {diff:.2e}")
            if "untrained" in name:
                text = "UNTRAINED random-init weights; " + text
        else:
            text = descriptions.get(name, "")
        lines.append(f"- `{name}`: {text}")
    return _front_matter(meta, config) + "\n".join(lines) + "\n"
