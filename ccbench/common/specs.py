"""Declarative specs read from YAML: tasks (``tasks/*.yaml``) and budget tiers (``budgets/*.yaml``).

Both use pydantic models with ``extra="forbid"``, so a typo in a spec fails loudly instead of being
ignored. Specs are versioned: a change that alters data or protocol must bump ``version``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(_Strict):
    """A hub dataset at a pinned revision; ``splits`` maps ccbench split names to the hub's."""

    path: str
    name: str | None = None
    revision: str
    splits: dict[str, str]


class LocalSource(_Strict):
    """A local folder under the data root; ``splits`` maps split names to sub-folders."""

    subdir: str
    splits: dict[str, str]


class CalibrationSpec(_Strict):
    """A stratified slice carved from ``source`` (per class ``ceil(fraction * n)`` examples, chosen by
    a seeded hash of the example id), never used for training. ``unit: sentence`` (single-text tasks whose
    source holds the phrases of its sentences, SST-2): the slice is drawn from the whole sentences only
    (``n`` counts sentences) and training drops every example inside a calibration sentence
    (:mod:`ccbench.data.sentences`)."""

    source: str = "train"
    fraction: float = Field(0.05, gt=0, lt=1)
    seed: int = 0
    unit: Literal["example", "sentence"] = "example"


class TextTaskSpec(_Strict):
    """What a text task adds: its GLUE metric (and, for ``reader: glue``, its layout in
    ``ccbench.data.glue.LAYOUTS``), the maximum length in tokens (head truncation), whether the target is a
    regression score, the local file ``reader`` (``glue``: GLUE TSV; ``sentence_label_tsv``: a quoted
    ``sentence<TAB>label`` TSV with a header; ``jsonl``: ``{"id", "text", "label"}`` per line) and the
    hub dataset's text fields (default: the GLUE task's)."""

    glue_task: str
    max_length: int = Field(gt=0)
    regression: bool = False
    reader: Literal["glue", "sentence_label_tsv", "jsonl"] = "glue"
    hub_fields: list[str] | None = None


class SubsetSpec(_Strict):
    """A fixed stratified subset: per class the ``per_class`` examples with the smallest
    ``sha256(seed:id)``."""

    per_class: int = Field(gt=0)
    seed: int = 0


class CorruptionSpec(_Strict):
    """ImageNet-C-style corruptions (``ccbench.data.corruptions``) applied to every image of the shift split
    at ``at_px`` pixels (the stored resolution), before the tier's resize."""

    names: list[str]
    severities: list[int] = [1, 2, 3, 4, 5]
    seed: int = 0
    at_px: int = Field(224, gt=0)


class ShiftSpec(_Strict):
    """How a task serves as the *target* of ``ccbench shift``: the split it is evaluated on, an optional
    fixed stratified subset of it, and (images) corruptions. ``eval_only`` tasks cannot be trained on."""

    split: str
    subset: SubsetSpec | None = None
    corruptions: CorruptionSpec | None = None
    eval_only: bool = False


class OfficialEval(_Strict):
    """The eval split a leaderboard row must be measured on: its size and the hash(es) of its data
    (``task.data_hash`` of a run record; the local copy and the hub copy may hash differently)."""

    n: int = Field(gt=0)
    data_sha256: list[str] = Field(min_length=1)


class CrossFitSpec(_Strict):
    """How a task is evaluated as the *target* of ``ccbench transfer`` when its own eval split is too small to
    see a 2-point gain: k-fold cross-fitting over ``split``. The examples are cut into ``folds`` folds,
    stratified by class, by ``sha256(seed:id)`` (fixed by ids, labels and this spec: the same for every
    method and seed, so transfers pair by example); each fold is predicted by a model transferred on the
    other folds, so every example is predicted exactly once. ``n`` and ``data_sha256`` are what
    ``ccbench validate`` checks a transfer record's eval set against (as :class:`OfficialEval`)."""

    split: str
    folds: int = Field(2, ge=2)
    seed: int = 0
    n: int = Field(gt=0)
    data_sha256: list[str] = Field(min_length=1)

    def identity(self) -> dict:
        """What a transfer record's ``task.eval_set`` must say to be measured on this eval set."""
        return {"scheme": "cross-fit", "split": self.split, "folds": self.folds, "seed": self.seed}


class TaskSpec(_Strict):
    """A versioned task: where its data lives, its classes, calibration slice and main score."""

    name: str
    version: int
    modality: Literal["image", "text"]
    description: str
    hub: HubSource | None = None  # None: no hub copy exists; the data must be local
    local: LocalSource
    classes: list[str]
    calibration: CalibrationSpec = CalibrationSpec()
    eval_split: str
    main_score: str  # a metric registry key (ccbench.common.metrics): top1, accuracy, matthews, ...
    citation: str
    text: TextTaskSpec | None = None
    subset_of: str | None = None  # an image task on some of another task's classes (relabelled 0..k-1)
    shift: ShiftSpec | None = None  # set on tasks that are targets of `ccbench shift`
    official_eval: OfficialEval | None = None  # what `ccbench validate` checks a record's eval split against
    transfer_eval: CrossFitSpec | None = None  # set: as a `ccbench transfer` target, cross-fitted over a split

    @model_validator(mode="after")
    def _cross_fit_split_exists(self) -> TaskSpec:
        """``transfer_eval`` names one of the task's local splits and (for now) a text task."""
        te = self.transfer_eval
        if te is not None and te.split not in self.local.splits:
            raise ValueError(f"transfer_eval.split {te.split!r} is not one of the task's splits "
                             f"({', '.join(self.local.splits)})")
        if te is not None and self.modality != "text":
            raise ValueError("transfer_eval (cross-fitted transfer) is implemented for text tasks only")
        if self.calibration.unit == "sentence" and self.modality != "text":
            raise ValueError("calibration.unit 'sentence' is for text tasks only")
        return self

    def transfer_eval_set(self) -> dict:
        """The identity of the eval set a transfer to this task is measured on: its cross-fit
        (:meth:`CrossFitSpec.identity`) or its eval split (``{"scheme": "split", "split": ...}``)."""
        from .protocols import split_eval_set

        if self.transfer_eval is not None:
            return self.transfer_eval.identity()
        return split_eval_set(self.eval_split)

    @field_validator("main_score")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        """The main score must be a registered metric (``ccbench.common.metrics``)."""
        from .metrics import known

        if name not in known():
            raise ValueError(f"unknown main score {name!r} (known: {', '.join(known())})")
        return name


class BackboneSpec(_Strict):
    """Backbone architecture and shape of a tier."""

    arch: str = "vit"
    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


class AugmentSpec(_Strict):
    """Random-resized-crop area ``scale`` range and horizontal flip."""

    scale: tuple[float, float] = (0.35, 1.0)
    flip: bool = True


class RecipeSpec(_Strict):
    """An optimisation recipe. ``samples`` is the budget in training samples seen; steps are
    ``ceil(samples / batch_size)``. ``lr`` is the peak AdamW learning rate."""

    samples: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_steps: int = 0
    label_smoothing: float = 0.1
    drop_path: float = 0.0
    grad_clip: float | None = 1.0
    augment: AugmentSpec = AugmentSpec()
    ema_decay: float | None = None
    stages: list[tuple[float, int]] | None = None  # (fraction of samples, img_size) progressive resolution


class DistillSpec(_Strict):
    """Distillation from the ImageNet teacher (``ccbench.training.teacher``), FKD-style: ``views`` stored crops
    per training image (area ``scale``, ``flip``, seeded by ``view_seed``) seen by the teacher at
    ``teacher_px``; ``loss`` soft (KL at ``temperature``) or hard (teacher argmax), weighted ``alpha``
    against cross-entropy on the true labels. With ``feature_weight`` > 0 the teacher's feature map after
    its block stage ``teacher_stage`` (stride 16 for stages 3-4) is stored too, pooled to a
    ``feature_grid`` square, and the student's patch tokens after block ``feature_block`` learn to
    predict it through a linear head used only in pretraining (locality guidance from a CNN, Li et al.
    2022, "Locality Guidance for Improving Vision Transformers on Tiny Datasets")."""

    teacher: Literal["efficientnet-lite0"] = "efficientnet-lite0"
    views: int = Field(8, ge=1)
    teacher_px: int = Field(160, ge=32)
    scale: tuple[float, float] = (0.35, 1.0)
    flip: bool = True
    view_seed: int = 0
    loss: Literal["soft", "hard"] = "soft"
    temperature: float = Field(1.0, gt=0)
    alpha: float = Field(1.0, ge=0, le=1)
    feature_weight: float = Field(0.0, ge=0)
    feature_block: int = Field(6, ge=1)
    teacher_stage: int = Field(4, ge=0, le=6)
    feature_grid: int = Field(8, ge=1)


class PretrainSpec(RecipeSpec):
    """The backbone's pretraining recipe: a :class:`RecipeSpec`, optionally distilled from a teacher."""

    distill: DistillSpec | None = None


class LatencySpec(_Strict):
    """Latency protocol: ``samples_b1`` images timed one at a time, ``batches`` batches of
    ``batch_size``; dense and method alternate on the same inputs; ``warmup`` untimed calls."""

    samples_b1: int
    batch_size: int = 8
    batches: int
    warmup: int = 5


class AuditSpec(_Strict):
    """fvcore audit of executed MACs: ``samples_b1`` seeded val samples one at a time, plus
    ``batches`` batches of ``batch_size``."""

    samples_b1: int
    batch_size: int = 8
    batches: int


class TextTaskBudget(_Strict):
    """A text task's training budget: a number of ``samples`` or of ``epochs`` over its train split (and
    optionally its own ``lr``)."""

    samples: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    lr: float | None = Field(None, gt=0)  # this task's learning rate, when tuning chose another than the recipe's


class TextBudgetSpec(_Strict):
    """Text tasks under a tier: the pretrained encoder (a short name, HF hub id or local folder; see
    ``ccbench.core.text_backbone``), the fine-tuning recipe (its ``samples`` is replaced per task) and each
    task's budget. Every method gets the same budget on a task."""

    backbone: str
    backbone_sha256: str | None = None  # the published encoder's weights fingerprint (what records state)
    finetune: RecipeSpec
    tasks: dict[str, TextTaskBudget]
    freeze_word_embeddings: bool = True  # their dense 30k x D gradient would dominate a CPU step
    transfer: RecipeSpec | None = None  # `ccbench transfer` to a text task (None: the tier's image `transfer`)

    def recipe_for(self, task: str, train_size: int) -> RecipeSpec:
        """The fine-tuning recipe of ``task`` with ``samples`` set from its budget.

        >>> spec = TextBudgetSpec(backbone="m", finetune=RecipeSpec(samples=1, batch_size=8, lr=1e-4),
        ...                       tasks={"mrpc": TextTaskBudget(epochs=3)})
        >>> spec.recipe_for("mrpc", 100).samples
        300
        >>> TextBudgetSpec(backbone="m", finetune=RecipeSpec(samples=1, batch_size=8, lr=1e-4),
        ...                tasks={"rte": TextTaskBudget(epochs=1, lr=3e-5)}).recipe_for("rte", 10).lr
        3e-05
        """
        if task not in self.tasks:
            raise UserError(f"this tier has no text budget for task {task!r} (it has: {', '.join(sorted(self.tasks))})")
        b = self.tasks[task]
        samples = b.samples if b.samples is not None else int(round(b.epochs * train_size))
        return self.finetune.model_copy(update={"samples": samples, **({"lr": b.lr} if b.lr is not None else {})})


class BudgetSpec(_Strict):
    """A budget tier: device, backbone, pretraining and fine-tuning recipes, eval, latency, audit;
    ``text`` says how text tasks run under it (None: the tier has no text tasks)."""

    name: str
    version: int
    description: str
    device: Literal["cpu", "cuda"]
    threads: int | None = None
    cache_px: int
    backbone: BackboneSpec
    # scratch (timm's initialisation), mimetic (attention initialised as Trockman & Kolter 2023 do,
    # ccbench.init) or timm:<name> (pretrained timm weights; needs the hub)
    backbone_init: str = Field("scratch", pattern=r"^(scratch|mimetic|timm:[A-Za-z0-9_.\-]+)$")
    pretrain: PretrainSpec
    finetune: RecipeSpec
    eval_batch_size: int
    eval_limit: int | None = None  # evaluate only the first N of the split (smoke tier only)
    latency: LatencySpec
    audit: AuditSpec
    seeds: list[int]
    text: TextBudgetSpec | None = None
    transfer: RecipeSpec | None = None  # `ccbench transfer`'s fixed budget, the same for every protocol and method
    # per modality, the oldest tier version whose records still compare with this version's (a version
    # that changes only the image backbone leaves text records comparable); default: this version only
    comparable_since: dict[Literal["image", "text"], int] = {}


    def transfer_recipe(self, modality: str) -> RecipeSpec | None:
        """``ccbench transfer``'s recipe for a target of ``modality``: the text section's own (``text.transfer``)
        for text when it has one, else :attr:`transfer` (None: the tier has no transfer budget)."""
        if modality == "text" and self.text is not None and self.text.transfer is not None:
            return self.text.transfer
        return self.transfer

    def comparable_versions(self, modality: str) -> range:
        """Tier versions whose records of ``modality`` are comparable with this version's."""
        return range(self.comparable_since.get(modality, self.version), self.version + 1)


def load_yaml_spec(path: Path, model: type[BaseModel]):
    """Parse ``path`` into ``model``; a malformed spec raises ``UserError`` naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        return model.model_validate(data)
    except (ValidationError, yaml.YAMLError) as err:
        first = str(err).splitlines()
        raise UserError(f"invalid spec {path}: {' '.join(first[:3])}") from None
