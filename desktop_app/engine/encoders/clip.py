"""CLIP encoders through open_clip, named ``ARCH:PRETRAINED`` or ``ARCH:/path/to/weights``.

Weights are looked for, in order: an explicit local file; open_clip's Hugging Face
cache; a download (with progress and timeouts, so an offline machine fails fast rather
than hanging) — only when the user asked for this model (``allow_download``): the
built-in default on a fresh data dir makes no network call, not even a DNS lookup.
When none works, :class:`EncoderUnavailable` says so plainly and the caller falls back
to the offline encoder (``clip_weights``).

On the CPU both towers run as ONNX Runtime sessions (``onnx_cache``). Once the exports
are cached, a start imports neither torch nor open_clip: the weights' location, the
preprocessing and the embedding size are cached beside the exports, preprocessing is
numpy, and the tokenizer (which needs torch) loads on the first text query only.

Threads: the indexing thread and search threads use the encoder at once; the lazily
loaded parts (tokenizer, text session, region encoder) are built under locks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from desktop_app.engine.encoders.base import Encoder, l2_normalise
from desktop_app.engine.encoders.clip_weights import (
    DownloadProgress,
    cached_weights,
    describe_load_error,
    is_local_weights,
    parse_clip_spec,
    resolve_weights,
)
from desktop_app.engine.encoders.onnx_cache import (
    ExportFailed,
    ExportSpec,
    OnnxModel,
    default_cache,
    ensure_export,
    file_identity,
    load_or_export,
    load_or_quantise,
)
from desktop_app.engine.encoders.runtime import ONNX, ONNX_INT8, TORCH, GuardedInt8, pick_runtime
from desktop_app.engine.errors import EncoderUnavailable, UnknownModel

log = logging.getLogger(__name__)

# models.py and tests find the weights helpers here, where they always were
__all__ = [
    "ClipEncoder",
    "cached_weights",
    "file_identity",
    "is_local_weights",
    "numpy_preprocess",
    "parse_clip_spec",
    "resolve_weights",
]


def _image_tower(model: Any) -> Any:
    """The image tower as a module: ``model.visual`` with its last block computing the
    class token alone where that is the embedding (:func:`_class_token_forward`). The
    PyTorch path runs it and the ONNX export is made from it."""
    import torch

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.class_token_only = _class_token_pooled(model.visual)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            if self.class_token_only:
                out: torch.Tensor = _class_token_forward(self.model.visual, image)
                return out
            features = self.model.encode_image(image)
            if isinstance(features, tuple):  # a tower that returns its tokens too
                features = features[0]
            pooled: torch.Tensor = features
            return pooled

    return Visual().eval()


def _towers(model: Any) -> tuple[Any, Any]:
    """The image and text towers as separate modules, as exported to ONNX."""
    import torch

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model.encode_text(tokens)
            return out

    return _image_tower(model), Text()


def _class_token_pooled(visual: Any) -> bool:
    """Whether ``visual`` is an open_clip ViT whose embedding is its class token alone
    (``pool_type == "tok"``, no attentional pooler, plain blocks, batch first): then its
    last block need only compute that token (:func:`_class_token_forward`)."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    if not isinstance(visual, VisionTransformer) or not callable(getattr(visual, "_embeds", None)):
        return False  # open_clip before 2.32 has no _embeds: the whole tower then
    blocks = getattr(visual.transformer, "resblocks", ())
    return (
        visual.attn_pool is None
        and visual.pool_type == "tok"
        and not visual.output_tokens
        and getattr(visual.transformer, "batch_first", False)
        and len(blocks) > 0
        and all(type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv") for b in blocks)
    )


def _class_token_forward(visual: Any, image: Any) -> Any:
    """``visual(image)`` for a ViT that :func:`_class_token_pooled` accepts, with the
    last block computing the class token only: its keys and values still come from
    every token, but its query, attention output and MLP from one row instead of all
    (50 for ViT-B-32 at 224 px). The same numbers (cosine 1.0 in fp32), a twelfth
    less work for a 12-block model: about 6 % more images a second on the CPU."""
    x = visual._embeds(image)
    *blocks, last = visual.transformer.resblocks
    for block in blocks:
        x = block(x)
    keys = last.ln_1(x)
    token = x[:, :1]
    attended = last.attn(keys[:, :1], keys, keys, need_weights=False)[0]
    token = token + last.ls_1(attended)
    token = token + last.ls_2(last.mlp(last.ln_2(token)))
    pooled = visual.ln_post(token[:, 0])
    return pooled @ visual.proj if visual.proj is not None else pooled


def numpy_preprocess(cfg: dict[str, Any]) -> Callable[[Image.Image], np.ndarray] | None:
    """open_clip's evaluation transform (shortest side to the input size, bicubic,
    centre crop, normalise) in PIL and numpy, pixel for pixel what torchvision computes;
    ``None`` for the other resize modes (the caller uses open_clip's own transform)."""
    size = cfg.get("size", 224)
    side = size if isinstance(size, int) else int(size[0])
    if not isinstance(size, int) and int(size[1]) != side:
        return None
    if cfg.get("resize_mode", "shortest") != "shortest" or cfg.get("interpolation") != "bicubic":
        return None
    mean = np.asarray(cfg["mean"], np.float32).reshape(3, 1, 1)
    std = np.asarray(cfg["std"], np.float32).reshape(3, 1, 1)

    def preprocess(im: Image.Image) -> np.ndarray:
        im = im.convert("RGB")
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(side * long / short)  # torchvision truncates
        new_w, new_h = (side, new_long) if w <= h else (new_long, side)
        if (new_w, new_h) != (w, h):
            im = im.resize((new_w, new_h), Image.Resampling.BICUBIC)
        top = int(round((new_h - side) / 2.0))
        left = int(round((new_w - side) / 2.0))
        im = im.crop((left, top, left + side, top + side))
        arr = np.asarray(im, np.float32).transpose(2, 0, 1) / np.float32(255.0)
        return np.asarray((arr - mean) / std, np.float32)

    return preprocess


class ClipEncoder(Encoder):
    """CLIP image and text towers. On a CPU they run as ONNX Runtime sessions (the image
    tower int8 by default, checked against fp32 on the first real images; the text tower
    fp32, opened on the first text query), exported once and cached; on a GPU, or when
    the export fails, in PyTorch."""

    has_text = True

    def __init__(
        self,
        spec: str,
        device: Any,  # a torch.device, or "cpu" (then torch is not imported unless needed)
        batch_size: int = 0,
        progress: DownloadProgress | None = None,
        allow_download: bool = True,
        *,
        runtime: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        arch, pretrained = parse_clip_spec(spec)
        self.device = str(getattr(device, "type", device))
        self.runtime = pick_runtime(self.device, ONNX_INT8, runtime)
        cache = cache_dir or default_cache()
        weights = self._weights_for(spec, arch, pretrained, progress, cache, allow_download)
        weights_hash = file_identity(weights)
        tag = f"file-{weights_hash}" if is_local_weights(pretrained) else pretrained
        self.id = f"{arch}:{tag}"
        self.label = f"CLIP {arch}"
        self._arch, self._weights = arch, weights
        self._device = device
        self.batch_size = batch_size or 16
        self.model: Any = None
        self._image_tower: Any = None  # the PyTorch path's image tower (_image_tower)
        self.preprocess: Callable[[Image.Image], np.ndarray]
        self._tokenizer: Any = None
        self._visual: OnnxModel | GuardedInt8 | None = None
        self._text: OnnxModel | None = None
        self._text_path: Path | None = None
        self._lock = threading.Lock()  # the lazily built parts
        self._regions: Encoder | None = None
        self._runtime_request, self._cache_dir = runtime, cache_dir
        if self.runtime != TORCH:
            try:
                self._load_onnx(f"{arch}:{weights_hash}", cache)
            except ExportFailed as exc:
                if isinstance(exc.__cause__, EncoderUnavailable):
                    raise exc.__cause__ from None  # the weights themselves do not load
                log.warning("ONNX Runtime path unavailable for %s; using PyTorch: %s", spec, exc)
                self.runtime = TORCH
        if self.runtime == TORCH:
            self._load_torch(batch_size)

    # -- loading ---------------------------------------------------------------------
    @staticmethod
    def _weights_for(
        spec: str,
        arch: str,
        pretrained: str,
        progress: DownloadProgress | None,
        cache: Path,
        allow_download: bool,
    ) -> Path:
        """The weights file; a named download resolved before is remembered in the cache,
        so a cached start does not import open_clip to look it up again."""
        if is_local_weights(pretrained):
            return resolve_weights(arch, pretrained, progress, allow_download)
        note = cache / f"weights-{hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()}.json"
        try:
            remembered = Path(json.loads(note.read_text())["path"])
            if remembered.is_file():
                return remembered
        except (OSError, ValueError, KeyError, TypeError):
            pass
        _check_arch(arch)
        weights = resolve_weights(arch, pretrained, progress, allow_download)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            note.write_text(json.dumps({"spec": spec, "path": str(weights)}))
        except OSError as exc:  # only costs the look-up next time
            log.debug("cannot remember where %s lives: %s", spec, exc)
        return weights

    def _create_model(self, device: Any) -> tuple[Any, Any]:
        import open_clip

        _check_arch(self._arch)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self._arch, pretrained=str(self._weights), device=device
            )
        except Exception as exc:  # a damaged, mismatched or unsafe checkpoint
            log.warning("loading %s as %s failed", self._weights, self._arch, exc_info=True)
            raise EncoderUnavailable(
                f"cannot load {self._weights} as {self._arch} weights: {describe_load_error(exc)}"
            ) from exc
        return model.eval(), preprocess

    def _load_torch(self, batch_size: int) -> None:
        _check_arch(self._arch)  # says plainly when this build has no torch
        import torch

        from desktop_app.engine.encoders.device import default_batch_size, pick_device

        self._device = pick_device(self.device)
        self.batch_size = batch_size or default_batch_size(self._device)
        self.model, transform = self._create_model(self._device)
        self._image_tower = _image_tower(self.model)
        self.preprocess = lambda im: transform(im.convert("RGB")).numpy()
        self.input_size = _image_hw(self.model)[0] * 2
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["a photo"]).to(self._device))
        self.dim = int(probe.shape[-1])

    def _load_onnx(self, weights_id: str, cache: Path) -> None:
        """Both towers from the cache, exported first when needed. The torch model is
        built only for an export and dropped right after: the exports hold the weights."""
        built: list[Any] = []

        def model() -> Any:
            if not built:
                import torch

                built.append(self._create_model(torch.device("cpu"))[0])
            return built[0]

        def example_image() -> tuple[Any, ...]:
            import torch

            return (torch.randn(2, 3, *_image_hw(model())),)

        visual = ExportSpec(
            f"{self._arch}-visual",
            weights_id,
            example_image,
            ["image"],
            ["embedding"],
            {"image": {0: "batch"}, "embedding": {0: "batch"}},
        )
        text = ExportSpec(
            f"{self._arch}-text",
            weights_id,
            lambda: (self.tokenizer(["a photo", "a dog"]),),
            ["tokens"],
            ["embedding"],
            {"tokens": {0: "batch"}, "embedding": {0: "batch"}},
        )
        fp32 = ensure_export(visual, lambda: _towers(model())[0], cache)
        meta = self._meta(fp32.with_suffix(".meta.json"), model)
        self._text_path = ensure_export(text, lambda: _towers(model())[1], cache)
        built.clear()  # the exports hold the weights now
        if self.runtime == ONNX_INT8:
            try:
                int8 = load_or_quantise(replace(visual, int8=True), fp32, cache)
                self._visual = GuardedInt8(int8, fp32)
            except ExportFailed as exc:
                log.warning("int8 model unavailable, using fp32 ONNX: %s", exc)
                self.runtime = ONNX
        if self._visual is None:
            self._visual = load_or_export(visual, lambda: _towers(model())[0], cache)
        self.preprocess = numpy_preprocess(meta["preprocess"]) or _open_clip_preprocess(
            meta["preprocess"]
        )
        self.dim = int(meta["dim"])
        self.input_size = int(meta["image_size"]) * 2

    def _meta(self, path: Path, model: Callable[[], Any]) -> dict[str, Any]:
        """What the encoder needs besides the sessions (so a cached start builds no
        torch model): the preprocessing, the embedding size and the input size."""
        try:
            meta: dict[str, Any] = json.loads(path.read_text())
            if {"preprocess", "dim", "image_size"} <= meta.keys():
                return meta
        except (OSError, ValueError):
            pass
        import torch

        m = model()
        with torch.inference_mode():
            dim = int(m.encode_text(self.tokenizer(["a photo"])).shape[-1])
        preprocess = dict(m.visual.preprocess_cfg)
        meta = {"preprocess": preprocess, "dim": dim, "image_size": _image_hw(m)[0]}
        path.write_text(json.dumps(meta))
        return meta

    @property
    def tokenizer(self) -> Any:
        """open_clip's tokenizer, loaded on first use (it imports torch)."""
        with self._lock:
            if self._tokenizer is None:
                import open_clip

                self._tokenizer = open_clip.get_tokenizer(self._arch)
            return self._tokenizer

    @property
    def region_encoder(self) -> Encoder:
        """EfficientNet-Lite0: partial matching is instance retrieval (local detail, not
        semantics), its feature map gives every region of an image from one pass at about
        320 px, and the region study measured its recall. A ViT's own patch tokens would
        cost nothing extra but are coarse (7 × 7 for ViT-B-32) and, in CLIP, poorly
        aligned with the image embedding that windows and crops are compared in. Loaded
        on first use, once."""
        with self._lock:
            if self._regions is None:
                from desktop_app.engine.encoders.efficientnet import EfficientNetLite0

                self._regions = EfficientNetLite0(
                    self._device,
                    self.batch_size,
                    runtime=self._runtime_request,
                    cache_dir=self._cache_dir,
                )
            return self._regions

    # -- inference -------------------------------------------------------------------
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = np.stack([self.preprocess(im) for im in images])
        if self._visual is not None:
            return l2_normalise(self._visual.run(batch)[0])
        import torch

        from desktop_app.engine.encoders.device import inference

        tensor = torch.from_numpy(batch)
        if self._device.type == "cuda":
            tensor = tensor.pin_memory()  # lets the copy below overlap
        with inference(self._device):
            out = self._image_tower(tensor.to(self._device, non_blocking=True))
        return l2_normalise(out.float().cpu().numpy())

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts))
        if self._text_path is not None:
            with self._lock:  # opened on the first text query: indexing never needs it
                if self._text is None:
                    self._text = OnnxModel(self._text_path)
            return l2_normalise(self._text.run(tokens.numpy())[0])
        from desktop_app.engine.encoders.device import inference

        with inference(self._device):
            out = self.model.encode_text(tokens.to(self._device))
        return l2_normalise(out.float().cpu().numpy())

    def describe(self) -> str:
        if self._visual is None:
            return super().describe()
        precision = self._visual.precision if isinstance(self._visual, GuardedInt8) else "fp32"
        return f"{self.label} on CPU (ONNX Runtime, {precision})"


def _check_arch(arch: str) -> None:
    from desktop_app.engine.bundled import NO_TORCH, torch_installed

    if not torch_installed():
        raise EncoderUnavailable(
            f"CLIP models need PyTorch and open_clip, and {NO_TORCH}. For CLIP, install "
            "the full build (desktop-app-cpu-torch or the CUDA one) or run from source"
        )
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - an install requirement
        raise EncoderUnavailable("CLIP models need the package open_clip_torch") from exc
    if arch not in open_clip.list_models():
        raise UnknownModel(f"open_clip has no architecture {arch!r}")


def _image_hw(model: Any) -> tuple[int, int]:
    size = getattr(model.visual, "image_size", (224, 224))
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _open_clip_preprocess(cfg: dict[str, Any]) -> Callable[[Image.Image], np.ndarray]:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    return lambda im: np.asarray(transform(im.convert("RGB")).numpy())
