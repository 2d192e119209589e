"""The configuration schema: one pydantic model per section, ``Config`` on top (the keys of ``params.yaml``,
which is also DVC's params file, so DVC tracks exactly what the stages read).

Secrets never live here: API keys come from the environment only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lema.lab.config import LabConfig  # the lab's own settings, usable without the rest of lema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Value ranges, checked when the config loads (before any stage runs).
Pos = Annotated[int, Field(ge=1)]
NonNeg = Annotated[int, Field(ge=0)]
PosF = Annotated[float, Field(gt=0)]
NonNegF = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]
# Kubernetes quantities in the forms Kubeflow accepts for CPU ("2", "500m") and memory ("8G", "512Mi"); the
# stage declaration checks its own values against the same patterns
CPU_PATTERN = r"^([0-9]*[.])?[0-9]+m?$"
MEMORY_PATTERN = r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$"
CPU = Annotated[str, Field(pattern=CPU_PATTERN)]
MEMORY = Annotated[str, Field(pattern=MEMORY_PATTERN)]


class EvalFields(_Strict):
    """Which fields of a user's rows hold what (a list of fields for `question` is joined with spaces)."""

    question: str | list[str] = "question"
    answer: str = "answer"
    id: str | None = None
    level: str | None = None
    subject: str | None = None


class EvalSetConfig(_Strict):
    """A bring-your-own evaluation set: a local JSONL file, or a hub dataset for users with a network."""

    path: str | None = None
    hub: str | None = None
    hub_config: str | None = None
    split: str = "test"
    fields: EvalFields = EvalFields()
    # numeric: the number rule (lema.grading.numbers); latex: math-verify; time: minutes since midnight;
    # text: casefolded, whitespace collapsed
    answer_type: Literal["numeric", "latex", "time", "text"] = "numeric"
    on_invalid: Literal["error", "skip"] = "error"  # skip: drop rows whose gold is unusable, counted and reported
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError("an evaluation set needs exactly one of 'path' (local JSONL) or 'hub' (dataset id)")
        return self


class DataConfig(_Strict):
    source: Literal["bundled", "hub"] = "bundled"
    dir: str = "data"
    train_tasks: list[Literal["gsm8k", "math"]] = ["gsm8k"]
    train_limit: Pos | None = 300
    # bundled split -> subset size (None = all), or name -> EvalSetConfig for a user's own set
    eval_sets: dict[str, Pos | None | EvalSetConfig] = {"gsm8k/test": 200, "math500/test": 50}

    @field_validator("eval_sets", mode="before")
    @classmethod
    def _declared_sets(cls, v):
        """Each declared set validated on its own, so an error names the set and its key, not pydantic's union."""
        if not isinstance(v, dict):
            return v
        out, errors = {}, []
        for name, spec in v.items():
            if isinstance(spec, dict):
                try:
                    out[name] = EvalSetConfig.model_validate(spec)
                except ValidationError as e:
                    keys = ", ".join(EvalSetConfig.model_fields)
                    for x in e.errors():
                        where = ".".join(str(p) for p in x["loc"])
                        msg = x["msg"].removeprefix("Value error, ")
                        if x["type"] == "extra_forbidden":
                            msg = f"unknown key (an evaluation set has {keys})"
                        errors.append(f"eval set '{name}'" + (f", key '{where}'" if where else "") + f": {msg}")
            elif spec is None or (isinstance(spec, int) and not isinstance(spec, bool) and spec >= 1):
                out[name] = spec
            else:
                errors.append(f"eval set '{name}': expected a number of questions (>= 1), null (all) or a "
                              f"declaration with path: or hub:, got {spec!r}")
        if errors:
            raise ValueError("; ".join(errors))
        return out


class BaseModelConfig(_Strict):
    """The embedded default model, built from scratch (no hub here)."""

    vocab_size: Pos = 2048
    hidden_size: Pos = 192
    num_layers: Pos = 4
    num_heads: Pos = 3
    intermediate_size: Pos = 768
    max_length: Pos = 384
    pretrain_steps: Pos | None = 300       # fixed step budget: the same config gives the same model
    pretrain_minutes: float | None = None  # optional wall-clock cap (not reproducible across machines)
    pretrain_max_epochs: Pos = 30
    batch_size: Pos = 32
    learning_rate: PosF = 2e-3
    corpus: list[str] = ["gsm8k/train"]


class GeneratorConfig(_Strict):
    """One generator: a model and its sampling settings (several may share a model)."""

    name: str
    model: str = "base"  # "base" = the embedded default built by `lema base-model`
    backend: Literal["vllm", "openai", "transformers"] = "vllm"
    n: Pos = 4
    temperature: NonNegF = 0.8
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.95
    max_tokens: Pos = 256
    stop: list[str] = ["\nQuestion:"]
    shots: NonNeg = 0
    base_url: str | None = None  # openai backend; the key is always OPENAI_API_KEY


class PriceConfig(_Strict):
    """US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0


class BudgetConfig(_Strict):
    """Caps on what the correct stage's answers cost (None = no cap), answers found in the cache included, so
    that a retried or resumed run never buys more than one uninterrupted run; no request starts whose worst
    case could pass a cap, and the stage stops cleanly when none fits."""

    max_requests: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None


class CorrectorConfig(_Strict):
    kind: Literal["reference", "llm", "hybrid"] = "reference"
    model: str | None = None
    base_url: str | None = None  # default: OPENAI_BASE_URL; the key is only ever OPENAI_API_KEY
    api: Literal["chat", "completions"] = "chat"
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: Pos = 768
    shots: int = 2
    n: Pos = 3  # attempts per wrong path; the first that validates is kept
    concurrency: Pos = 32
    timeout_s: PosF = 60.0
    max_retries: NonNeg = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    prices: dict[str, PriceConfig] = {"gpt-4o": PriceConfig(input=2.5, output=10.0),
                                      "gpt-4o-mini": PriceConfig(input=0.15, output=0.6)}
    budget: BudgetConfig = BudgetConfig()
    batch: bool = False             # OpenAI Batch API: half price, hours of latency, resumable by stored batch ids
    batch_poll_s: float = 30.0
    batch_wait_s: float = 86400.0   # stop waiting (cleanly) after this long; a rerun picks the batch up again
    batch_discount: float = 0.5


class StepCheckConfig(_Strict):
    """The step checker against the corrector's first wrong step (numeric tasks; others are tagged undecidable)."""

    mostly: float = Field(0.8, ge=0.0, le=1.0)  # least agreement where both name a step; below it the stage fails
    action: Literal["quarantine", "tag"] = "quarantine"  # a disagreeing row: quarantined, or kept and tagged


class ValidateConfig(_Strict):
    min_pass_rate: Share = 0.0
    leakage_ngram: Pos = 8           # word n-grams compared against every evaluation question
    leakage_threshold: Share = 0.5   # max share of a training question's n-grams found in one eval question
    data_docs: bool = True
    step_check: StepCheckConfig = StepCheckConfig()


class SFTConfigModel(_Strict):
    cot_limit: NonNeg | None = 2000  # training questions whose reference solutions form the CoT data
    include_right_paths: bool = False
    correction_fraction: Share = 1.0  # share of validated corrections mixed into the LeMa set
    cot_repeats: Pos = 1
    explanations: bool = True


class LoraConfigModel(_Strict):
    enabled: bool = False
    r: Pos = 16
    alpha: Pos = 32
    dropout: Share = 0.05
    target_modules: str | list[str] = "all-linear"


class TrainConfig(_Strict):
    """A training recipe (see recipes/*.yaml); `recipe: FILE` loads one, keys given here override it."""

    recipe: str | None = None
    model: str = "base"
    epochs: PosF = 2.0
    max_steps: Annotated[int, Field(ge=-1)] = -1                   # > 0 overrides epochs (the paper: 1000 steps)
    learning_rate: PosF = 5e-4
    learning_rate_large: float | None = None  # used instead when the model has >= large_model_params_b
    large_model_params_b: float = 34.0
    batch_size: Pos = 16                  # per device
    global_batch_size: Pos | None = None  # sets gradient accumulation: global / (per device x devices)
    grad_accum: Pos = 1
    max_length: Pos = 512
    max_source_length: int | None = None  # prompt tokens kept (paper: 512 GSM8K, 768 MATH)
    max_target_length: int | None = None  # completion tokens kept
    warmup_ratio: Share = 0.05
    lr_scheduler: str = "cosine"
    weight_decay: NonNegF = 0.0
    max_grad_norm: PosF = 1.0
    logging_steps: Pos = 5
    bf16: bool = False
    gradient_checkpointing: bool = False
    quantization: Literal["none", "nf4"] = "none"  # nf4 = QLoRA (bitsandbytes, CUDA only)
    double_quant: bool = True
    packing: bool = False                 # pack examples into max_length blocks
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = "wrapped"  # bfd implies padding-free (FlashAttention)
    save_steps: Pos | None = None         # checkpoint every N steps (default: every epoch)
    mixture: dict[str, float] = {"cot": 1.0, "correction": 1.0}  # sampling weight per SFT example kind
    lora: LoraConfigModel = LoraConfigModel()


class EvaluateConfig(_Strict):
    backend: Literal["vllm", "openai", "transformers"] = "vllm"
    max_tokens: Pos = 256
    shots: NonNeg = 0
    stop: list[str] = ["\nQuestion:"]
    samples: NonNeg = 0            # k > 0 adds maj@k and pass@k from k sampled answers per question
    sample_temperature: NonNegF = 0.7
    # The decimal rule (lema.grading.numbers): a decimal answer printed with at least this many decimals
    # matches a longer decimal gold rounded to them; null = exact only (fractions still round to the gold).
    min_decimals: Pos | None = 2


class RegisterConfig(_Strict):
    tracking_uri: str | None = None  # default: MLFLOW_TRACKING_URI, else sqlite in the run dir
    experiment: str = "lema"
    model_name: str = "lema-math-reasoner"
    primary_metric: str = "gsm8k/test"
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05          # significance level for moving `champion`
    min_questions: Pos = 1       # shared questions needed before a comparison counts
    min_accuracy: Share = 0.0    # Kubeflow gate: register only if the better model reaches this on primary_metric


class VLLMConfig(_Strict):
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.2  # on the CPU build this is a share of host memory
    # Explicit KV-cache size.  On CPU, vLLM otherwise subtracts this process's whole RSS (e.g. a model
    # trained earlier in the same `lema run`) from its share and can end up with nothing.  None = auto.
    kv_cache_gib: float | None = 1.0
    dtype: str = "float32"
    max_model_len: int | None = None
    enforce_eager: bool = True


class TolerationConfig(_Strict):
    key: str = "nvidia.com/gpu"
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = "NoSchedule"


class KubeflowConfig(_Strict):
    """Where the compiled pipeline's pods run and what they mount (kfp-kubernetes); no stage reads it."""
    # KFP runs a run's pods in the run's namespace: this one (a Kubeflow profile namespace; `lema pipeline
    # submit --namespace` defaults to it), where infra/base defines the objects below (infra/README.md).
    namespace: str = "lema"
    config_map: str = "lema-pipeline"          # MLFLOW_TRACKING_URI, OPENAI_BASE_URL for every task
    secret: str = "lema-corrector"             # key api_key -> OPENAI_API_KEY of the correct tasks
    cache_pvc: str = "lema-corrector-cache"    # the corrector's response cache and Batch ids, mounted by default
    cache_mount: str = "/mnt/lema-cache"
    gpu_tolerations: list[TolerationConfig] = [TolerationConfig()]
    gpu_node_selector: dict[str, str] = {}     # e.g. {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
    small_cpu: CPU = "500m"                    # merge and gate tasks: requests = limits
    small_memory: MEMORY = "1G"


class Config(_Strict):
    run_dir: str = "runs/default"
    seed: int = 1234
    # LeMa in rounds: round r >= 2 samples with round r-1's registry champion on the next data.train_limit
    # training questions and trains on all rounds' data (lema.stages expands the graph per round).
    rounds: int = Field(1, ge=1)
    data: DataConfig = DataConfig()
    base_model: BaseModelConfig = BaseModelConfig()
    generators: list[GeneratorConfig] = Field(default_factory=lambda: [GeneratorConfig(name="base-t0.8")])
    corrector: CorrectorConfig = CorrectorConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    sft: SFTConfigModel = SFTConfigModel()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    register_: RegisterConfig = Field(RegisterConfig(), alias="register")
    vllm: VLLMConfig = VLLMConfig()
    lab: LabConfig = LabConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("generators")
    @classmethod
    def _unique_names(cls, v: list[GeneratorConfig]) -> list[GeneratorConfig]:
        names = [g.name for g in v]
        if len(set(names)) != len(names):
            raise ValueError(f"generator names must be unique, got {names}")
        if not v:
            raise ValueError("at least one generator is needed")
        return v

    @model_validator(mode="after")
    def _rounds_need_fresh_questions(self) -> "Config":
        if self.rounds > 1 and self.data.train_limit is None:
            raise ValueError("rounds > 1 needs data.train_limit: round r collects on training questions "
                             "(r-1)*train_limit .. r*train_limit-1")
        return self

    def section_hash(self, *sections: str) -> str:
        from lema.config.serialize import digest, pick

        return digest(pick(self.model_dump(mode="json", by_alias=True), sections))

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)
