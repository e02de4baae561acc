"""`TrainConfig`: every training choice in one typed dataclass.

Field names are the names search spaces use, the flags `mixtune train` takes, the keys
of an exported YAML file and the params logged to MLflow. Validation lives here and only
here: the CLI parses, the search spaces suggest, this module decides what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import ConfigError
from .files import read_yaml, write_text_atomic



# Methods: which pairing draws partners, and whether K interpolations and the
# dual-contrastive (Infinite Class Mixup) objective apply. One table, read by mixing and fit.
@dataclass(frozen=True)
class MethodSpec:
    pairing: str | None  # None (no mixing) | "random" | "cluster"
    multi: bool = False  # K sorted interpolations per pair (Multi-Mix)
    contrastive: bool = False  # Infinite Class Mixup dual-contrastive loss
    scope: str = "set"  # cluster pairing: partner from the whole training set | "batch": from the same batch
    mix_inputs: bool = True  # False: label sharing, the anchor's input unchanged, only the targets mix


# ICM variants (Mai & Lin's released code, github.com/maitanha/cll_ot, HEAD train.py +
# cl_augmentation.aug_intra_class): the authors draw the partner inside the batch (itself
# allowed, see `self_pairing`) and, in the reported ablation, keep the anchor's input and
# share the partner's complementary labels ("label sharing").
METHODS: dict[str, MethodSpec] = {
    "none": MethodSpec(None),
    "mixup": MethodSpec("random"),
    "icm": MethodSpec("cluster"),
    "icm_in_batch": MethodSpec("cluster", scope="batch"),
    "icm_share_labels": MethodSpec("cluster", mix_inputs=False),
    "icm_share_labels_in_batch": MethodSpec("cluster", scope="batch", mix_inputs=False),
    "multimix": MethodSpec("random", multi=True),
    "icm_multimix": MethodSpec("cluster", multi=True),
    "infinite_class": MethodSpec("random", contrastive=True),
    "icm_infinite_class": MethodSpec("cluster", contrastive=True),
}

DATASETS = ("digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "cifar20", "svhn", "npz", "folder",
            "clcifar10", "clcifar20", "clmicro_imagenet10", "clmicro_imagenet20")
# the CLImage benchmarks (climage.py): three annotators' complementary labels per image, labels=given only
CLIMAGE_DATASETS = ("clcifar10", "clcifar20", "clmicro_imagenet10", "clmicro_imagenet20")
CLIMAGE_ANNOTATORS = 3
GIVEN_LABEL_DATASETS = ("npz", "folder", *CLIMAGE_DATASETS)  # datasets whose files may carry complementary labels (cl_train)
MODELS = ("auto", "linear", "mlp", "mlp1", "cnn", "resnet18", "resnet34")
LABELS = ("ordinary", "complementary", "given")
# labels whose training targets are complementary (every CLL loss applies)
CL_LABELS = ("complementary", "given")
ORDINARY_LOSSES = ("ce",)
COMPLEMENTARY_LOSSES = ("scl_nl", "scl_exp", "fwd", "ure_ga", "ure_tnn", "pc")
MIX_LEVELS = ("input", "manifold", "cutmix")
CLUSTER_FEATURES = ("raw", "pca", "encoder")
CL_TYPES = ("uniform", "multiple", "biased")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "none")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """One training run. Defaults: complementary-label learning on digits with an MLP."""

    # --- data -------------------------------------------------------------------------
    dataset: str = "digits"
    """digits (embedded) | mnist | fashion_mnist | kmnist | cifar10 | cifar100 | cifar20 | svhn (torchvision root) | npz (file) | folder (your images) | clcifar10 | clcifar20 | clmicro_imagenet10 | clmicro_imagenet20 (CLImage files, labels=given)."""
    data_dir: str | None = None
    """Directory (a torchvision root, idx files, an image folder) or .npz file path; not used for digits."""
    train_fraction: float = 0.8
    """For datasets shipped as one split (digits, an MNIST test set alone): share kept for training."""
    val_fraction: float = 0.1
    """Share of the training rows held out for validation, in [0, 0.5]; 0 = no validation split (no val_* metric)."""
    data_seed: int = 0
    """Seeds the data a user would have: the validation split, the generated complementary labels, the imbalance subsample."""
    augment: bool = False
    """Random flips and 4-pixel crops, batched on the device (for CIFAR-style images)."""
    image_size: int = 0
    """dataset=folder: resize every image to image_size x image_size pixels; 0 = keep their size (all must match)."""
    standardize_features: bool = True
    """Tabular float features (an (N, D) float .npz) are standardised one by one with the train mean/std; off = one shared mean/std."""

    # --- labels -----------------------------------------------------------------------
    labels: str = "complementary"
    """ordinary (true labels) | complementary (drawn from the true labels) | given (the dataset's own complementary labels, no true ones)."""
    cl_type: str = "uniform"
    """How complementary labels are drawn: uniform | multiple (num_cl per example) | biased (transition matrix)."""
    num_cl: int = 1
    """Complementary labels per example (cl_type=multiple); with a CLImage dataset, how many of its 3 annotators' labels to use (1-3)."""
    cl_noise: float = 0.0
    """Share of examples whose complementary label is wrong (equal to the true class), in [0, 1)."""
    imbalance_ratio: float = 1.0
    """Largest / smallest class size of the training set after subsampling (1 = balanced)."""

    # --- model, loss, method ------------------------------------------------------------
    model: str = "auto"
    """linear | mlp | mlp1 (one hidden layer, no BatchNorm: the CLL papers' MLP) | cnn | resnet18 | resnet34; auto picks mlp for 8x8 and 28x28, resnet18 for 32x32."""
    hidden: int = 256
    """Width of the MLP's hidden layers and base width of the CNN."""
    loss: str = "auto"
    """ce (ordinary) | scl_nl | scl_exp | fwd | ure_ga | ure_tnn | pc (complementary); auto = ce or scl_nl."""
    method: str = "none"
    """none | mixup | icm | icm_in_batch | icm_share_labels | icm_share_labels_in_batch | multimix | icm_multimix | infinite_class | icm_infinite_class."""
    alpha: float = 1.0
    """Mixing weights are drawn from Beta(alpha, alpha); > 0."""
    k: int = 10
    """Number of k-means clusters for ICM pairing; >= 1."""
    K: int = 1
    """Interpolations per pair (Multi-Mix); >= 1; > 1 only with multimix methods."""
    mix_level: str = "input"
    """input (mixup of inputs) | manifold (mix a hidden layer) | cutmix (paste boxes)."""
    contrastive_weight: float = 1.0
    """Infinite Class Mixup: weight of the dual-contrastive loss vs plain mixed CE, in [0, 1]; 1 = paper."""
    contrastive_balance: float = 0.5
    """Infinite Class Mixup: share of the row (per-example) direction vs columns, in [0, 1]; 0.5 = paper."""
    self_pairing: bool = False
    """ICM methods: an anchor may draw itself as its partner (the authors' in-batch code does); False: another cluster member when there is one."""
    cluster_features: str = "pca"
    """Features k-means runs on: raw (pixels) | pca (pca_dim components) | encoder (self-supervised CNN, cached); L2-normalised."""
    pca_dim: int = 32
    """Components kept for cluster_features=pca."""

    # --- optimisation --------------------------------------------------------------------
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    """adam | adamw | sgd (momentum 0.9, nesterov)."""
    schedule: str = "cosine"
    """cosine | step (x0.1 at 50% and 75% of epochs) | none."""
    seed: int = 0
    """Seeds the training run: model, batches, clustering, pairing and mixing weights (not the data: data_seed)."""

    # --- execution -----------------------------------------------------------------------
    device: str = "auto"
    """auto (cuda if available) | cpu | cuda | cuda:N."""
    precision: str = "auto"
    """auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16."""
    num_threads: int = 0
    """CPU threads for torch (0 = torch's default); results on the CPU depend on it, so exports keep it."""
    compile: bool = False
    """torch.compile the model (worth it on a GPU for long runs)."""
    cache_dir: str | None = None
    """Where k-means clusterings and decoded image folders are cached; default $MIXTUNE_CACHE or ~/.cache/mixtune."""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived values
    @property
    def method_spec(self) -> MethodSpec:
        return METHODS[self.method]

    @property
    def complementary(self) -> bool:
        """Training targets are complementary labels (generated or given)."""
        return self.labels in CL_LABELS

    @property
    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        return "ce" if self.labels == "ordinary" else "scl_nl"

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ConfigError (one line, naming the field) for any value mixtune cannot use."""
        _check_types(self)

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")

        choice("dataset", DATASETS)
        choice("model", MODELS)
        choice("labels", LABELS)
        choice("method", tuple(METHODS))
        choice("mix_level", MIX_LEVELS)
        choice("cluster_features", CLUSTER_FEATURES)
        choice("cl_type", CL_TYPES)
        choice("optimizer", OPTIMIZERS)
        choice("schedule", SCHEDULES)
        choice("precision", PRECISIONS)
        losses = ORDINARY_LOSSES if self.labels == "ordinary" else COMPLEMENTARY_LOSSES
        if self.loss != "auto" and self.loss not in losses:
            raise ConfigError(
                f"loss={self.loss!r} does not apply to labels={self.labels}; use one of {', '.join(losses)}"
            )

        def at_least(name: str, low: float) -> None:
            if getattr(self, name) < low:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= {low}")

        def within(name: str, low: float, high: float, high_open: bool = False) -> None:
            v = getattr(self, name)
            if not (low <= v < high if high_open else low <= v <= high):
                raise ConfigError(f"{name}={v} must be in [{low}, {high}{')' if high_open else ']'}")

        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ConfigError(f"alpha={self.alpha} must be a finite number > 0")
        at_least("k", 1)
        at_least("K", 1)
        at_least("num_cl", 1)
        at_least("hidden", 1)
        at_least("pca_dim", 1)
        at_least("epochs", 1)
        at_least("batch_size", 1)
        at_least("seed", 0)
        at_least("num_threads", 0)
        at_least("imbalance_ratio", 1.0)
        within("contrastive_weight", 0.0, 1.0)
        within("contrastive_balance", 0.0, 1.0)
        within("cl_noise", 0.0, 1.0, high_open=True)
        within("train_fraction", 0.0, 1.0, high_open=True)
        within("val_fraction", 0.0, 0.5)
        at_least("data_seed", 0)
        if self.train_fraction <= 0:
            raise ConfigError(f"train_fraction={self.train_fraction} must be in (0, 1)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr={self.lr} must be a finite number > 0")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay={self.weight_decay} must be a finite number >= 0")
        if self.K > 1 and not self.method_spec.multi:
            raise ConfigError(f"K={self.K} needs a Multi-Mix method (multimix, icm_multimix), not method={self.method}")
        if self.method_spec.contrastive and self.mix_level != "input":
            raise ConfigError(f"method={self.method} mixes inputs only; mix_level={self.mix_level} is not supported")
        if self.self_pairing and self.method_spec.pairing != "cluster":
            raise ConfigError(f"self_pairing=True applies to ICM methods (same-cluster partners), not method={self.method}")
        if not self.method_spec.mix_inputs and self.mix_level != "input":
            raise ConfigError(f"method={self.method} shares labels without mixing inputs; mix_level={self.mix_level} does not apply")
        climage = self.dataset in CLIMAGE_DATASETS
        if climage and self.labels != "given":
            raise ConfigError(f"dataset={self.dataset} carries annotators' complementary labels: use labels=given"
                              f" (labels={self.labels} would train on its true labels, which mixtune reads for diagnostics only)")
        if climage and not 1 <= self.num_cl <= CLIMAGE_ANNOTATORS:
            raise ConfigError(f"num_cl={self.num_cl}: dataset={self.dataset} has {CLIMAGE_ANNOTATORS} complementary labels"
                              f" per image; use 1 to {CLIMAGE_ANNOTATORS}")
        if self.num_cl > 1 and self.cl_type != "multiple" and not climage:
            raise ConfigError(f"num_cl={self.num_cl} needs cl_type=multiple, not {self.cl_type}")
        if self.labels == "given":
            generated = [f"{n}={getattr(self, n)}" for n, d in (("cl_type", "uniform"), ("num_cl", 1), ("cl_noise", 0.0))
                         if getattr(self, n) != d and not (n == "num_cl" and climage)]
            if generated:
                raise ConfigError(f"{', '.join(generated)} describe generated complementary labels (labels=complementary);"
                                  " labels=given uses the dataset's own")
            if self.imbalance_ratio != 1.0:
                raise ConfigError(f"imbalance_ratio={self.imbalance_ratio} subsamples by true class, which labels=given"
                                  " does not have")
            if self.dataset not in GIVEN_LABEL_DATASETS:
                raise ConfigError(f"labels=given needs a dataset that carries complementary labels"
                                  f" ({', '.join(GIVEN_LABEL_DATASETS)}), not dataset={self.dataset}")
        at_least("image_size", 0)
        if self.image_size and self.dataset != "folder":
            raise ConfigError(f"image_size={self.image_size} resizes dataset=folder images, not dataset={self.dataset}")
        if self.dataset != "digits" and not self.data_dir:
            raise ConfigError(f"dataset={self.dataset} needs data_dir (a directory, or the .npz file)")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device={self.device!r} is not auto, cpu, cuda or cuda:N")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys and wrong types are a ConfigError."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of TrainConfig fields, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        values = read_yaml(path, ConfigError, "config")
        return cls.from_dict({} if values is None else values, source=str(path))

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename): a crash never leaves half a config."""
        return write_text_atomic(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def default_cache_dir() -> Path:
    """Where clusterings and decoded folders are cached when `cache_dir` is unset."""
    return Path(os.environ.get("MIXTUNE_CACHE") or Path.home() / ".cache" / "mixtune")


def field_types() -> dict[str, type]:
    """Field name -> the plain Python type a value must have (str for `str | None`)."""
    hints = get_type_hints(TrainConfig)
    out: dict[str, type] = {}
    for f in fields(TrainConfig):
        hint = hints[f.name]
        args = getattr(hint, "__args__", None)
        out[f.name] = next(a for a in args if a is not type(None)) if args else hint
    return out


def _check_types(cfg: TrainConfig) -> None:
    hints = get_type_hints(TrainConfig)
    types = field_types()
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        want = types[f.name]
        optional = type(None) in getattr(hints[f.name], "__args__", ())
        if value is None and optional:
            continue
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(cfg, f.name, float(value))
            continue
        if want is int and isinstance(value, float) and value.is_integer():
            setattr(cfg, f.name, int(value))
            continue
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            raise ConfigError(f"{f.name}={value!r} must be of type {want.__name__}")

