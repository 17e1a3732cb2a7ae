"""Type stubs for stackllama (the pybind11 module stackllama._core, re-exported)."""

import os
from typing import Any, Callable, Iterator, Literal, Sequence, overload

import numpy as np
import numpy.typing as npt

__version__: str

def version() -> str:
    """The version of the linked stackllama library."""

# --- errors: one class per stackllama error code (the C ABI's stackllama_status) ---

class Error(Exception):
    """Base of every stackllama error; `code` is the stackllama error code."""

    code: int

class InvalidArgumentError(Error, ValueError): ...  # code 1
class IoError(Error, OSError): ...  # code 2
class FormatError(Error): ...  # code 3
class UnsupportedError(Error, NotImplementedError): ...  # code 4
class OutOfRangeError(Error, ValueError): ...  # code 5
class OutOfMemoryError(Error, MemoryError): ...  # code 6
class CancelledError(Error): ...  # code 7
class InternalError(Error): ...  # code 99

_Path = str | os.PathLike[str]
_Prompt = str | Sequence[int]
_OnToken = Callable[[str, int], bool | None]

class Tokenizer:
    """SentencePiece tokenizer (tokenizer.model + tokenizer_config.json). Thread-safe."""

    def __init__(self, dir: _Path) -> None: ...
    def encode(self, text: str, add_special: bool = True) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str: ...
    def id_to_piece(self, id: int) -> str: ...
    def piece_to_id(self, piece: str) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def bos_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...
    @property
    def unk_id(self) -> int: ...
    @property
    def pad_id(self) -> int: ...
    @property
    def add_bos(self) -> bool: ...
    @property
    def add_eos(self) -> bool: ...
    def is_control(self, id: int) -> bool: ...
    def is_byte(self, id: int) -> bool: ...
    def __len__(self) -> int: ...

class Model:
    """A LLaMA-family model (HF directory or native file); immutable, shareable across threads."""

    def __init__(
        self,
        path: _Path,
        n_threads: int = 0,
        load_tokenizer: bool = True,
        verbose: bool = False,
        verify_checksums: bool = True,
        quantize: str | None = None,
    ) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def weight_dtype(self) -> Literal["f32", "f16", "bf16"]: ...
    @property
    def weight_bytes(self) -> int: ...
    @property
    def has_tokenizer(self) -> bool: ...
    @property
    def tokenizer(self) -> Tokenizer: ...
    def save_pretrained(self, dir: _Path) -> None: ...
    def merge_adapters(self, adapters: Sequence[Adapter | tuple[Adapter, float]]) -> Model: ...

class Adapter:
    """A PEFT LoRA adapter loaded for one model; immutable, keeps the model alive."""

    def __init__(self, model: Model, dir: _Path) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def lora_modules(self) -> list[str]: ...
    @property
    def saved_modules(self) -> list[str]: ...

class GenerationConfig:
    """Generation options named as transformers' GenerationConfig, with its defaults."""

    max_new_tokens: int  # 128
    do_sample: bool  # False: greedy
    temperature: float  # 1.0
    top_k: int  # 50; 0 = off
    top_p: float  # 1.0 = off
    min_p: float  # 0.0 = off
    typical_p: float  # 1.0 = off
    repetition_penalty: float  # 1.0 = off
    presence_penalty: float  # 0.0
    frequency_penalty: float  # 0.0
    no_repeat_ngram_size: int  # 0 = off
    logit_bias: dict[int, float]  # {}
    seed: int | None  # None: a random seed per call
    eos_token_id: int | list[int] | None  # extra ids that end generation
    use_model_eos: bool  # True: the model's EOS ids end generation too
    stop_strings: list[str]  # []
    num_return_sequences: int  # 1
    def __init__(
        self,
        *,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 1.0,
        min_p: float = 0.0,
        typical_p: float = 1.0,
        repetition_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        no_repeat_ngram_size: int = 0,
        logit_bias: dict[int, float] | None = None,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        use_model_eos: bool = True,
        stop_strings: str | Sequence[str] | None = None,
        num_return_sequences: int = 1,
    ) -> None: ...
    def to_dict(self) -> dict[str, Any]: ...

class GenerationResult:
    @property
    def text(self) -> str: ...
    @property
    def tokens(self) -> list[int]: ...
    @property
    def finish_reason(self) -> Literal["eos", "length", "stop_string", "cancelled"]: ...
    @property
    def logprobs(self) -> npt.NDArray[np.float32]: ...
    @property
    def seed(self) -> int: ...
    @property
    def stop_string(self) -> str: ...

class TokenLogProbs:
    @property
    def tokens(self) -> list[int]: ...
    @property
    def logprobs(self) -> npt.NDArray[np.float32]: ...
    @property
    def sum(self) -> float: ...

class ScoredAnswer:
    @property
    def answer(self) -> GenerationResult: ...
    @property
    def text(self) -> str: ...
    @property
    def reward(self) -> npt.NDArray[np.float32]: ...
    @property
    def index(self) -> int: ...

class TextStream(Iterator[str]):
    """Iterator of text pieces from Generator.stream(); dropping it cancels the generation."""

    def __iter__(self) -> TextStream: ...
    def __next__(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> TextStream: ...
    def __exit__(self, *args: object) -> None: ...
    @property
    def result(self) -> GenerationResult | None: ...

class WorkerPool:
    """Worker threads that Generators share: n_threads in all, their jobs one after another."""

    def __init__(self, n_threads: int = 0) -> None: ...
    @property
    def n_threads(self) -> int: ...

class Generator:
    """One sequence (KV cache) of a model, with adapters attached unmerged. One thread at a time."""

    def __init__(self, model: Model, n_ctx: int = 0, pool: WorkerPool | None = None) -> None: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_past(self) -> int: ...
    @property
    def tokens(self) -> list[int]: ...
    def reset(self) -> None: ...
    def attach(self, adapter: Adapter, scale: float = 1.0) -> None: ...
    def detach(self, adapter: Adapter) -> None: ...
    def detach_all(self) -> None: ...
    @property
    def attached(self) -> list[tuple[Adapter, float]]: ...
    @overload
    def eval(self, tokens: Sequence[int], all_logits: Literal[False] = False) -> npt.NDArray[np.float32]: ...
    @overload
    def eval(self, tokens: Sequence[int], all_logits: bool) -> npt.NDArray[np.float32]: ...
    @overload
    def generate(
        self,
        prompt: _Prompt,
        config: GenerationConfig | None = None,
        *,
        raw: bool = False,
        reset: bool = True,
        on_token: _OnToken | None = None,
        return_result: Literal[False] = False,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        typical_p: float = ...,
        repetition_penalty: float = ...,
        presence_penalty: float = ...,
        frequency_penalty: float = ...,
        no_repeat_ngram_size: int = ...,
        logit_bias: dict[int, float] | None = ...,
        seed: int | None = ...,
        eos_token_id: int | Sequence[int] | None = ...,
        use_model_eos: bool = ...,
        stop_strings: str | Sequence[str] | None = ...,
        num_return_sequences: int = ...,
    ) -> str: ...
    @overload
    def generate(
        self,
        prompt: _Prompt,
        config: GenerationConfig | None = None,
        *,
        raw: bool = False,
        reset: bool = True,
        on_token: _OnToken | None = None,
        return_result: Literal[True],
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        typical_p: float = ...,
        repetition_penalty: float = ...,
        presence_penalty: float = ...,
        frequency_penalty: float = ...,
        no_repeat_ngram_size: int = ...,
        logit_bias: dict[int, float] | None = ...,
        seed: int | None = ...,
        eos_token_id: int | Sequence[int] | None = ...,
        use_model_eos: bool = ...,
        stop_strings: str | Sequence[str] | None = ...,
        num_return_sequences: int = ...,
    ) -> GenerationResult: ...
    def stream(
        self,
        prompt: _Prompt,
        config: GenerationConfig | None = None,
        *,
        raw: bool = False,
        reset: bool = True,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        typical_p: float = ...,
        repetition_penalty: float = ...,
        presence_penalty: float = ...,
        frequency_penalty: float = ...,
        no_repeat_ngram_size: int = ...,
        logit_bias: dict[int, float] | None = ...,
        seed: int | None = ...,
        eos_token_id: int | Sequence[int] | None = ...,
        use_model_eos: bool = ...,
        stop_strings: str | Sequence[str] | None = ...,
        num_return_sequences: int = ...,
    ) -> TextStream: ...
    def generate_batch(
        self,
        prompts: Sequence[_Prompt],
        config: GenerationConfig | None = None,
        *,
        raw: bool = False,
        on_token: Callable[[int, str, int], bool | None] | None = None,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        typical_p: float = ...,
        repetition_penalty: float = ...,
        presence_penalty: float = ...,
        frequency_penalty: float = ...,
        no_repeat_ngram_size: int = ...,
        logit_bias: dict[int, float] | None = ...,
        seed: int | None = ...,
        eos_token_id: int | Sequence[int] | None = ...,
        use_model_eos: bool = ...,
        stop_strings: str | Sequence[str] | None = ...,
        num_return_sequences: int = ...,
    ) -> list[GenerationResult]: ...
    def log_likelihood(self, prompt: str | Sequence[int], continuation: str | Sequence[int]) -> TokenLogProbs: ...
    score = log_likelihood
    def perplexity(self, text: str | Sequence[int]) -> float: ...
    def reward(self, text: str | Sequence[int]) -> npt.NDArray[np.float32]: ...
    def reward_batch(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> npt.NDArray[np.float32]: ...
    def best_of_n(
        self,
        prompt: str,
        config: GenerationConfig | None = None,
        *,
        reward_model: Generator | None = None,
        policy_adapters: Sequence[Adapter | tuple[Adapter, float]] | None = None,
        reward_adapters: Sequence[Adapter | tuple[Adapter, float]] | None = None,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        typical_p: float = ...,
        repetition_penalty: float = ...,
        presence_penalty: float = ...,
        frequency_penalty: float = ...,
        no_repeat_ngram_size: int = ...,
        logit_bias: dict[int, float] | None = ...,
        seed: int | None = ...,
        eos_token_id: int | Sequence[int] | None = ...,
        use_model_eos: bool = ...,
        stop_strings: str | Sequence[str] | None = ...,
        num_return_sequences: int = ...,
    ) -> list[ScoredAnswer]: ...
    def cancel(self) -> None: ...
