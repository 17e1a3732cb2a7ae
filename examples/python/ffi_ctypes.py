#!/usr/bin/python3
"""Answer a question through stackllama's C ABI with ctypes only (no pybind11, no build step).

    ffi_ctypes.py [--lib PATH] -m MODEL [-p QUESTION] [-n N] [-t THREADS] [--raw]
                  [--lora DIR [--lora-scale S]] [--temp T [--seed N]]

The library is --lib, else $STACKLLAMA_LIB, else `libstackllama.so.0` found by the dynamic
loader. The structs below mirror stackllama.h; the *_init functions are given their ctypes size,
so the library fills the defaults and refuses a layout it does not know. Importable: the test
suite uses CApi to compare tokens and logits with the C++ API.
"""

from __future__ import annotations

import argparse
import ctypes as C
import os
import sys

OK = 0
BUFFER_TOO_SMALL = 100
FINISH_REASONS = {0: "eos", 1: "length", 2: "stop_string", 3: "cancelled"}


class ModelParams(C.Structure):
    _fields_ = [
        ("struct_size", C.c_uint32),
        ("n_threads", C.c_int32),
        ("load_tokenizer", C.c_int32),
        ("verbose", C.c_int32),
        ("verify_checksums", C.c_int32),
        ("reserved0", C.c_int32),
    ]


class GeneratorParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("n_ctx", C.c_int32)]


class GenerationParams(C.Structure):
    _fields_ = [
        ("struct_size", C.c_uint32),
        ("max_new_tokens", C.c_int32),
        ("do_sample", C.c_int32),
        ("temperature", C.c_float),
        ("top_k", C.c_int32),
        ("top_p", C.c_float),
        ("min_p", C.c_float),
        ("typical_p", C.c_float),
        ("repetition_penalty", C.c_float),
        ("presence_penalty", C.c_float),
        ("frequency_penalty", C.c_float),
        ("no_repeat_ngram_size", C.c_int32),
        ("has_seed", C.c_int32),
        ("num_return_sequences", C.c_int32),
        ("seed", C.c_uint64),
        ("eos_token_ids", C.POINTER(C.c_int32)),
        ("n_eos_token_ids", C.c_size_t),
        ("use_model_eos", C.c_int32),
        ("reserved0", C.c_int32),
        ("stop_strings", C.POINTER(C.c_char_p)),
        ("n_stop_strings", C.c_size_t),
        ("logit_bias_tokens", C.POINTER(C.c_int32)),
        ("logit_bias_values", C.POINTER(C.c_float)),
        ("n_logit_bias", C.c_size_t),
    ]


# bool (*)(const char *piece, size_t piece_len, int32_t token, void *user_data)
TokenCallback = C.CFUNCTYPE(C.c_bool, C.POINTER(C.c_char), C.c_size_t, C.c_int32, C.c_void_p)

_P = C.c_void_p  # every handle is opaque


class StackllamaError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class CApi:
    """The functions of stackllama.h this example uses, with their prototypes."""

    def __init__(self, path: str | None = None):
        path = path or os.environ.get("STACKLLAMA_LIB") or "libstackllama.so.0"
        lib = self.lib = C.CDLL(path)
        sig = {
            "stackllama_version": (C.c_char_p, []),
            "stackllama_last_error": (C.c_char_p, []),
            "stackllama_status_name": (C.c_char_p, [C.c_int]),
            "stackllama_model_params_init": (C.c_int, [C.POINTER(ModelParams), C.c_size_t]),
            "stackllama_model_load": (C.c_int, [C.c_char_p, C.POINTER(ModelParams), C.POINTER(_P)]),
            "stackllama_model_free": (None, [_P]),
            "stackllama_model_n_vocab": (C.c_int32, [_P]),
            "stackllama_model_get_tokenizer": (C.c_int, [_P, C.POINTER(_P)]),
            "stackllama_tokenizer_free": (None, [_P]),
            "stackllama_tokenizer_encode": (
                C.c_int, [_P, C.c_char_p, C.c_bool, C.POINTER(C.c_int32), C.c_size_t,
                          C.POINTER(C.c_size_t)]),
            "stackllama_tokenizer_decode": (
                C.c_int, [_P, C.POINTER(C.c_int32), C.c_size_t, C.c_bool, C.c_char_p, C.c_size_t,
                          C.POINTER(C.c_size_t)]),
            "stackllama_adapter_load": (C.c_int, [_P, C.c_char_p, C.POINTER(_P)]),
            "stackllama_adapter_free": (C.c_int, [_P]),
            "stackllama_model_merge_adapters": (
                C.c_int, [_P, C.POINTER(_P), C.POINTER(C.c_float), C.c_size_t, C.POINTER(_P)]),
            "stackllama_generator_params_init": (
                C.c_int, [C.POINTER(GeneratorParams), C.c_size_t]),
            "stackllama_generator_create": (
                C.c_int, [_P, C.POINTER(GeneratorParams), C.POINTER(_P)]),
            "stackllama_generator_free": (None, [_P]),
            "stackllama_generator_reset": (C.c_int, [_P]),
            "stackllama_generator_attach": (C.c_int, [_P, _P, C.c_float]),
            "stackllama_generator_detach": (C.c_int, [_P, _P]),
            "stackllama_generator_eval": (
                C.c_int, [_P, C.POINTER(C.c_int32), C.c_size_t, C.c_bool,
                          C.POINTER(C.POINTER(C.c_float)), C.POINTER(C.c_size_t)]),
            "stackllama_generation_params_init": (
                C.c_int, [C.POINTER(GenerationParams), C.c_size_t]),
            "stackllama_generator_generate": (
                C.c_int, [_P, C.c_char_p, C.POINTER(GenerationParams), TokenCallback, C.c_void_p,
                          C.POINTER(_P)]),
            "stackllama_generator_cancel": (None, [_P]),
            "stackllama_result_free": (None, [_P]),
            "stackllama_result_text": (C.c_char_p, [_P]),
            "stackllama_result_text_len": (C.c_size_t, [_P]),
            "stackllama_result_tokens": (C.POINTER(C.c_int32), [_P]),
            "stackllama_result_n_tokens": (C.c_size_t, [_P]),
            "stackllama_result_finish_reason": (C.c_int, [_P]),
        }
        for name, (restype, argtypes) in sig.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = restype, argtypes

    def check(self, status: int) -> None:
        if status != OK:
            raise StackllamaError(status, self.lib.stackllama_last_error().decode())

    def version(self) -> str:
        return self.lib.stackllama_version().decode()

    def model_params(self, **fields) -> ModelParams:
        p = ModelParams()
        self.check(self.lib.stackllama_model_params_init(C.byref(p), C.sizeof(p)))
        for k, v in fields.items():
            setattr(p, k, v)
        return p

    def generation_params(self, **fields) -> GenerationParams:
        """Defaults from the library, then the given fields (seed=N also sets has_seed)."""
        p = GenerationParams()
        self.check(self.lib.stackllama_generation_params_init(C.byref(p), C.sizeof(p)))
        for k, v in fields.items():
            setattr(p, k, v)
        if "seed" in fields:
            p.has_seed = 1
        return p


class Model:
    def __init__(self, api: CApi, path: str, n_threads: int = 0, handle: int | None = None):
        self.api, self.handle = api, _P(handle)
        if handle is None:
            params = api.model_params(n_threads=n_threads)
            api.check(api.lib.stackllama_model_load(path.encode(), C.byref(params),
                                                    C.byref(self.handle)))

    def __del__(self):
        self.api.lib.stackllama_model_free(self.handle)

    @property
    def n_vocab(self) -> int:
        return self.api.lib.stackllama_model_n_vocab(self.handle)

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        api, tok, n = self.api, _P(), C.c_size_t()
        api.check(api.lib.stackllama_model_get_tokenizer(self.handle, C.byref(tok)))
        try:
            # The size query first, then the ids.
            api.check(api.lib.stackllama_tokenizer_encode(tok, text.encode(), add_special, None,
                                                          0, C.byref(n)))
            ids = (C.c_int32 * n.value)()
            api.check(api.lib.stackllama_tokenizer_encode(tok, text.encode(), add_special, ids,
                                                          n.value, C.byref(n)))
            return list(ids)
        finally:
            api.lib.stackllama_tokenizer_free(tok)

    def merge(self, adapter: "Adapter", scale: float) -> "Model":
        out = _P()
        arr = (_P * 1)(adapter.handle)
        scales = (C.c_float * 1)(scale)
        self.api.check(self.api.lib.stackllama_model_merge_adapters(self.handle, arr, scales, 1,
                                                                    C.byref(out)))
        return Model(self.api, "", handle=out.value)


class Adapter:
    def __init__(self, model: Model, path: str):
        self.api, self.handle = model.api, _P()
        self.api.check(self.api.lib.stackllama_adapter_load(model.handle, path.encode(),
                                                            C.byref(self.handle)))

    def free(self) -> None:
        """Refused (StackllamaError) while the adapter is attached to a generator."""
        if self.handle:
            self.api.check(self.api.lib.stackllama_adapter_free(self.handle))
            self.handle = _P()


class Generator:
    def __init__(self, model: Model):
        self.api, self.model, self.handle = model.api, model, _P()
        self.api.check(self.api.lib.stackllama_generator_create(model.handle, None,
                                                                C.byref(self.handle)))

    def __del__(self):
        self.api.lib.stackllama_generator_free(self.handle)

    def attach(self, adapter: Adapter, scale: float = 1.0) -> None:
        self.api.check(self.api.lib.stackllama_generator_attach(self.handle, adapter.handle,
                                                                scale))

    def detach(self, adapter: Adapter) -> None:
        self.api.check(self.api.lib.stackllama_generator_detach(self.handle, adapter.handle))

    def eval_all(self, ids: list[int]) -> list[list[float]]:
        """Logits of every id, as rows of floats (a copy)."""
        api = self.api
        api.check(api.lib.stackllama_generator_reset(self.handle))
        arr = (C.c_int32 * len(ids))(*ids)
        logits, rows = C.POINTER(C.c_float)(), C.c_size_t()
        api.check(api.lib.stackllama_generator_eval(self.handle, arr, len(ids), True,
                                                    C.byref(logits), C.byref(rows)))
        n = self.model.n_vocab
        return [logits[r * n:(r + 1) * n] for r in range(rows.value)]

    def generate(self, prompt: str, on_piece=None, **params) -> tuple[bytes, list[int], str]:
        """Streams pieces (bytes) to on_piece; returns (text, tokens, finish reason)."""
        api = self.api
        gp = api.generation_params(**params)

        @TokenCallback
        def callback(piece, piece_len, token, user_data):
            if on_piece is not None:
                return on_piece(C.string_at(piece, piece_len)) is not False
            return True

        result = _P()
        api.check(api.lib.stackllama_generator_reset(self.handle))
        api.check(api.lib.stackllama_generator_generate(self.handle, prompt.encode(),
                                                        C.byref(gp), callback, None,
                                                        C.byref(result)))
        try:
            text = C.string_at(api.lib.stackllama_result_text(result),
                               api.lib.stackllama_result_text_len(result))
            toks = api.lib.stackllama_result_tokens(result)
            tokens = toks[:api.lib.stackllama_result_n_tokens(result)]
            reason = FINISH_REASONS[api.lib.stackllama_result_finish_reason(result)]
        finally:
            api.lib.stackllama_result_free(result)
        return text, tokens, reason


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=None)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-p", "--prompt", default="How do I sort a dict?")
    ap.add_argument("-n", "--n-predict", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--lora", default=None)
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--temp", type=float, default=0.0, help="0 = greedy; > 0 samples")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    api = CApi(a.lib)
    prompt = a.prompt if a.raw else f"Question: {a.prompt}\n\nAnswer: "
    out = sys.stdout.buffer

    def on_piece(piece: bytes) -> bool:
        out.write(piece)
        out.flush()
        return True

    try:
        model = Model(api, a.model, n_threads=a.threads)
        gen = Generator(model)
        adapter = None
        if a.lora:
            adapter = Adapter(model, a.lora)
            gen.attach(adapter, a.lora_scale)
        sampling = dict(do_sample=1, temperature=a.temp) if a.temp > 0 else {}
        if a.seed is not None:
            sampling["seed"] = a.seed
        _, tokens, reason = gen.generate(prompt, on_piece, max_new_tokens=a.n_predict, **sampling)
        if adapter:
            gen.detach(adapter)
            adapter.free()
    except StackllamaError as e:
        print(f"ffi_ctypes.py: {e}", file=sys.stderr)
        return 1
    print(f"\nffi_ctypes.py: stackllama {api.version()}, {len(tokens)} tokens, finished by "
          f"{reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
