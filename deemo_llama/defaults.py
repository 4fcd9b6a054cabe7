"""The shipped fine-tuned default: a small delta on top of the embedded base checkpoint.

``deemo train`` writes a whole checkpoint (the base LLM's 540 MB included). What the training changed
is small: the two projectors (they were trained by the anchor stage) and the LoRA adapter (the
finetune stage); the fuser is fitted afterwards. :func:`export_delta` keeps only those, in float16,
with the recipe, the training summary and a card (what it was trained on, its held-out scores):

    deemo_llama/defaults/trained/
        projectors.safetensors   the projectors' weights (float16)
        adapter/                 the peft LoRA adapter (float16)
        fuser.json               the late-fusion model (fusion.py)
        recipe.yaml, train_summary.json, card.json

:func:`compose` rebuilds the checkpoint from the embedded base (``deemo models prepare`` does it as
the ``trained`` asset step, in seconds): the base's files, the projectors put back (float32), the
config marked ``projectors_trained``, the adapter, the fuser and the provenance files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .errors import AssetError

SHIPPED = Path(__file__).parent / "defaults" / "trained"
PROJECTORS_FILE = "projectors.safetensors"
PROVENANCE = ("fuser.json", "recipe.yaml", "train_summary.json", "card.json")
# the trained checkpoint's DeemoConfig settings that the composed one takes over from it (how it is run)
CONFIG_FILE, CONFIG_KEYS = "config_delta.json", ("transcribe_from",)


def export_delta(trained: str | Path, out: str | Path = SHIPPED, card: dict | None = None) -> Path:
    """Write the delta of the fine-tuned checkpoint ``trained`` (projectors, adapter, fuser, provenance)
    to ``out``, replacing what is there only once the whole delta is written."""
    from .modeling import ADAPTER_DIR

    trained, final = Path(trained), Path(out)
    if not (trained / ADAPTER_DIR).is_dir():
        raise AssetError(f"{trained}: no LoRA adapter (not a checkpoint from `deemo train`)")
    # written beside ``out`` and swapped in whole: a failed export leaves the delta there as it was
    final.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    out.chmod(0o755)  # mkdtemp's is 0700; the delta is package data
    try:
        _write_delta(trained, out, card)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    out.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _write_delta(trained: Path, out: Path, card: dict | None) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .config import DeemoConfig
    from .modeling import ADAPTER_DIR

    (out / ADAPTER_DIR).mkdir(parents=True)
    with safe_open(str(trained / "model.safetensors"), "pt") as f:
        proj = {k: f.get_tensor(k).to(torch.float16).contiguous() for k in f.keys() if k.startswith("projectors.")}
    save_file(proj, str(out / PROJECTORS_FILE))
    with safe_open(str(trained / ADAPTER_DIR / "adapter_model.safetensors"), "pt") as f:
        save_file({k: f.get_tensor(k).to(torch.float16).contiguous() for k in f.keys()}, str(out / ADAPTER_DIR / "adapter_model.safetensors"))
    shutil.copy(trained / ADAPTER_DIR / "adapter_config.json", out / ADAPTER_DIR / "adapter_config.json")
    for name in PROVENANCE:
        if (trained / name).is_file():
            shutil.copy(trained / name, out / name)
    settings = DeemoConfig.load(trained).to_dict()
    (out / CONFIG_FILE).write_text(json.dumps({k: settings[k] for k in CONFIG_KEYS}, indent=2) + "\n")
    if card is not None:
        (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")


def compose(base: str | Path, out: str | Path, delta: str | Path = SHIPPED) -> Path:
    """The fine-tuned default checkpoint in ``out``: ``base`` (the embedded untrained checkpoint)
    with the shipped projectors, adapter, fuser and provenance."""
    import torch
    from safetensors.torch import load_file, save_file

    from .config import DeemoConfig
    from .modeling import ADAPTER_DIR

    base, out, delta = Path(base), Path(out), Path(delta)
    if not (delta / PROJECTORS_FILE).is_file():
        raise AssetError(f"{delta}: the shipped fine-tuned default is missing ({PROJECTORS_FILE}); reinstall deemo-llama")
    for f in base.iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    weights = load_file(str(base / "model.safetensors"))
    proj = load_file(str(delta / PROJECTORS_FILE))
    unknown = sorted(set(proj) - set(weights))
    wrong = [k for k in proj if k in weights and proj[k].shape != weights[k].shape]
    if unknown or wrong:
        raise AssetError(f"the shipped projectors do not fit the embedded base checkpoint ({(unknown or wrong)[0]}); run `deemo models prepare --force`")
    weights |= {k: v.to(torch.float32) for k, v in proj.items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = DeemoConfig.load(out)
    config.projectors_trained = True
    if (delta / CONFIG_FILE).is_file():  # absent in a delta exported before it existed: the defaults
        for k, v in json.loads((delta / CONFIG_FILE).read_text()).items():
            if k in CONFIG_KEYS:
                setattr(config, k, v)
    config.save(out)
    (out / ADAPTER_DIR).mkdir()
    adapter = load_file(str(delta / ADAPTER_DIR / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float32) for k, v in adapter.items()}, str(out / ADAPTER_DIR / "adapter_model.safetensors"))
    shutil.copy(delta / ADAPTER_DIR / "adapter_config.json", out / ADAPTER_DIR / "adapter_config.json")
    for name in PROVENANCE:
        if (delta / name).is_file():
            shutil.copy(delta / name, out / name)
    return out
