"""stackllama: LLaMA-family models with PEFT LoRA adapters on CPUs.

    import stackllama
    model = stackllama.Model("path/to/hf-dir-or-native-file", n_threads=2)
    gen = stackllama.Generator(model)
    gen.attach(stackllama.Adapter(model, "path/to/peft-adapter"), scale=1.0)
    print(gen.generate("How do I sort a dict?", max_new_tokens=64))
    for piece in gen.stream("How do I sort a dict?", max_new_tokens=64):
        print(piece, end="", flush=True)

The classes are those of the C++ library (stackllama::Model, ::Adapter, ::Tokenizer,
::Generator), bound with pybind11 in stackllama._core. The GIL is released while models load and
while generators compute. Errors raise stackllama.Error subclasses carrying the C++ message.
"""

from ._core import (  # noqa: F401
    Adapter,
    CancelledError,
    Error,
    FormatError,
    GenerationConfig,
    GenerationResult,
    Generator,
    InternalError,
    InvalidArgumentError,
    IoError,
    Model,
    OutOfMemoryError,
    OutOfRangeError,
    ScoredAnswer,
    TextStream,
    TokenLogProbs,
    Tokenizer,
    UnsupportedError,
    WorkerPool,
    __version__,
    version,
)

__all__ = [
    "Adapter",
    "CancelledError",
    "Error",
    "FormatError",
    "GenerationConfig",
    "GenerationResult",
    "Generator",
    "InternalError",
    "InvalidArgumentError",
    "IoError",
    "Model",
    "OutOfMemoryError",
    "OutOfRangeError",
    "ScoredAnswer",
    "TextStream",
    "TokenLogProbs",
    "Tokenizer",
    "UnsupportedError",
    "WorkerPool",
    "__version__",
    "version",
]
