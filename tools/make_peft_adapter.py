#!/usr/bin/python3
"""Write a random PEFT LoRA adapter directory for a LLaMA checkpoint, laid out as PEFT saves one.

The directory holds adapter_config.json and the weights, as adapter_model.safetensors or as
adapter_model.bin (torch.save of an OrderedDict of torch tensors, PEFT's older format), with
PEFT's saved key names (the adapter name stripped, as get_peft_model_state_dict does):

    base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_A.weight   [r, in]
    base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_B.weight     [out, r]
    base_model.model.lm_head.weight                    modules_to_save: full replacement
    base_model.model.model.embed_tokens.weight         modules_to_save: full replacement

(--adapter-name-in-keys writes the lora keys as ...lora_A.default.weight, the form of the
in-memory state dict, which PEFT's loader also accepts.)

Shapes come from the base model's config.json (only that file is read; --override changes
fields of it first, to write an adapter that does NOT fit the base, for mismatch tests).

Which modules get LoRA weights follows PEFT's rules for the config written: target_modules as a
list (a module matches when its name is, or ends with ".<entry>") or as a string (re.fullmatch
of the module name), layers_to_transform (layer index found with layers_pattern, or PEFT's
default r".*\\.[^.]*\\.(\\d+)\\."), and per-module rank/alpha from rank_pattern / alpha_pattern
(first key, in the order given, with re.match(rf"(.*\\.)?{key}$", module_name)).

Random, seeded weights. PEFT initialises lora_B to zero, which would make an adapter a no-op and
any test pass; here lora_A ~ N(0, 1/in) and lora_B ~ N(0, (strength / (s * sqrt(r)))^2), with s
the module's scaling (lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA), so that the LoRA
term s * B A x is about `strength` times the size of W x whatever r and alpha are.

Used as a CLI (see --help) and as a module by tests/reference/make_adapter_fixtures.py:

    from make_peft_adapter import make_adapter
    make_adapter("out/adapter", "out/base", target_modules=["q_proj", "v_proj"], r=16,
                 lora_alpha=32, seed=1)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_llama_fixture  # noqa: E402

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
# Module names (relative to the causal-LM model) that modules_to_save may name.
SAVEABLE = {"lm_head": "lm_head", "embed_tokens": "model.embed_tokens"}
WEIGHT_FILES = {"safetensors": "adapter_model.safetensors", "bin": "adapter_model.bin"}
DEFAULT_LAYER_RE = r".*\.[^.]*\.(\d+)\."


# ---------------------------------------------------------------- the base model's modules


def linear_modules(config: dict) -> "OrderedDict[str, tuple[int, int]]":
    """Every LoRA-able linear of a LLaMA model: name -> (out_features, in_features)."""
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    ffn = config["intermediate_size"]
    shapes = {
        "q_proj": (heads * head_dim, hidden),
        "k_proj": (kv_heads * head_dim, hidden),
        "v_proj": (kv_heads * head_dim, hidden),
        "o_proj": (hidden, heads * head_dim),
        "gate_proj": (ffn, hidden),
        "up_proj": (ffn, hidden),
        "down_proj": (hidden, ffn),
    }
    out: OrderedDict[str, tuple[int, int]] = OrderedDict()
    for i in range(config["num_hidden_layers"]):
        for m in ATTN:
            out[f"model.layers.{i}.self_attn.{m}"] = shapes[m]
        for m in MLP:
            out[f"model.layers.{i}.mlp.{m}"] = shapes[m]
    return out


# ---------------------------------------------------------------- PEFT's matching rules


def layer_index(name: str, layers_pattern) -> int | None:
    if not layers_pattern:
        m = re.match(DEFAULT_LAYER_RE, name)
        return int(m.group(1)) if m else None
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else list(layers_pattern)
    for p in patterns:
        m = re.match(rf".*\.{p}\.(\d+)\.", name)
        if m:
            return int(m.group(1))
    return None


def is_targeted(name: str, target_modules, layers_to_transform, layers_pattern) -> bool:
    if isinstance(target_modules, str):
        # PEFT: a string is a regex matched against the whole name (layers_to_transform is not
        # allowed together with it).
        return re.fullmatch(target_modules, name) is not None
    if name in target_modules:
        return True
    if not any(name.endswith("." + t) for t in target_modules):
        return False
    if layers_to_transform is None or layers_to_transform == []:
        return True
    wanted = [layers_to_transform] if isinstance(layers_to_transform, int) else layers_to_transform
    idx = layer_index(name, layers_pattern)
    return idx is not None and idx in wanted


def pattern_value(patterns: dict, name: str, default):
    for key, value in patterns.items():  # dict order = the order given
        if re.match(rf"(.*\.)?{key}$", name):
            return value
    return default


def module_rank_alpha(name: str, r: int, lora_alpha: float, rank_pattern: dict,
                      alpha_pattern: dict) -> tuple[int, float]:
    return (pattern_value(rank_pattern, name, r), pattern_value(alpha_pattern, name, lora_alpha))


def scaling(r: int, alpha: float, use_rslora: bool) -> float:
    return alpha / math.sqrt(r) if use_rslora else alpha / r


# ---------------------------------------------------------------- config.json


def adapter_config(*, base_model_name_or_path: str, target_modules, r: int, lora_alpha: float,
                   lora_dropout: float, use_rslora: bool, fan_in_fan_out: bool, bias: str,
                   modules_to_save, rank_pattern: dict, alpha_pattern: dict,
                   layers_to_transform, layers_pattern, config_style: str) -> dict:
    if config_style == "legacy":
        # PEFT 0.2 (the StackLLaMA era): fewer fields, two that later versions dropped.
        return {
            "base_model_name_or_path": base_model_name_or_path,
            "bias": bias,
            "enable_lora": None,
            "fan_in_fan_out": fan_in_fan_out,
            "inference_mode": True,
            "lora_alpha": lora_alpha,
            "lora_dropout": lora_dropout,
            "merge_weights": False,
            "modules_to_save": modules_to_save,
            "peft_type": "LORA",
            "r": r,
            "target_modules": target_modules,
            "task_type": "CAUSAL_LM",
        }
    if config_style != "modern":
        raise ValueError(f"config_style must be modern or legacy, not {config_style}")
    # A recent PEFT (0.13-0.14) writes every LoraConfig field, sorted by name.
    return {
        "alpha_pattern": dict(alpha_pattern),
        "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": bias,
        "eva_config": None,
        "exclude_modules": None,
        "fan_in_fan_out": fan_in_fan_out,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": layers_pattern,
        "layers_to_transform": layers_to_transform,
        "loftq_config": {},
        "lora_alpha": lora_alpha,
        "lora_bias": False,
        "lora_dropout": lora_dropout,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": modules_to_save,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": dict(rank_pattern),
        "revision": None,
        "target_modules": target_modules,
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": use_rslora,
    }


# ---------------------------------------------------------------- weights


def round_to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values that storing x as `dtype` keeps (so both formats hold the same)."""
    if dtype == "f32":
        return x.astype(np.float32)
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        bits = make_llama_fixture.f32_to_bf16_bits(x).astype(np.uint32) << 16
        return bits.view(np.float32)
    raise ValueError(f"dtype must be one of f32, f16, bf16, not {dtype}")


def write_bin(path: Path, tensors: list[tuple[str, np.ndarray]], dtype: str) -> None:
    import torch  # only this format needs torch

    state = OrderedDict()
    for name, a in tensors:
        if dtype == "bf16":
            bits = make_llama_fixture.f32_to_bf16_bits(a).view(np.int16)
            t = torch.from_numpy(bits.copy()).view(torch.bfloat16)
        elif dtype == "f16":
            t = torch.from_numpy(a.astype(np.float16))
        else:
            t = torch.from_numpy(a.astype(np.float32).copy())
        state[name] = t.contiguous()
    torch.save(state, path)


def lora_key(module: str, ab: str, adapter_name_in_keys: bool) -> str:
    mid = ".default" if adapter_name_in_keys else ""
    return f"base_model.model.{module}.lora_{ab}{mid}.weight"


def make_tensors(config: dict, *, target_modules, r, lora_alpha, use_rslora, modules_to_save,
                 rank_pattern, alpha_pattern, layers_to_transform, layers_pattern, seed,
                 strength, adapter_name_in_keys) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The adapter's float32 tensors in save order, and the names of the adapted modules."""
    rng = np.random.default_rng(seed)
    tensors: list[tuple[str, np.ndarray]] = []
    adapted = []
    for name, (out_f, in_f) in linear_modules(config).items():
        if not is_targeted(name, target_modules, layers_to_transform, layers_pattern):
            continue
        mr, ma = module_rank_alpha(name, r, lora_alpha, rank_pattern, alpha_pattern)
        s = scaling(mr, ma, use_rslora)
        a = rng.standard_normal((mr, in_f), dtype=np.float32) * np.float32(in_f**-0.5)
        b_std = strength / (abs(s) * math.sqrt(mr))
        b = rng.standard_normal((out_f, mr), dtype=np.float32) * np.float32(b_std)
        tensors.append((lora_key(name, "A", adapter_name_in_keys), a.astype(np.float32)))
        tensors.append((lora_key(name, "B", adapter_name_in_keys), b.astype(np.float32)))
        adapted.append(name)
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    head_std = 2.0 / math.sqrt(hidden)
    for m in modules_to_save or []:
        if m not in SAVEABLE:
            raise ValueError(f"modules_to_save: only {sorted(SAVEABLE)} are supported, not {m}")
        std = head_std if (m == "lm_head" or config.get("tie_word_embeddings")) else 1.0
        w = rng.standard_normal((vocab, hidden), dtype=np.float32) * np.float32(std)
        tensors.append((f"base_model.model.{SAVEABLE[m]}.weight", w.astype(np.float32)))
    return tensors, adapted


# ---------------------------------------------------------------- the adapter directory


def make_adapter(
    out_dir: str | Path,
    base_dir: str | Path,
    *,
    target_modules=("q_proj", "v_proj"),
    r: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_rslora: bool = False,
    fan_in_fan_out: bool = False,
    bias: str = "none",
    modules_to_save: list[str] | None = None,
    rank_pattern: dict | None = None,
    alpha_pattern: dict | None = None,
    layers_to_transform=None,
    layers_pattern=None,
    fmt: str = "safetensors",
    bin_out: str | Path | None = None,
    dtype: str = "f32",
    adapter_name_in_keys: bool = False,
    seed: int = 0,
    strength: float = 0.5,
    base_model_name_or_path: str | None = None,
    override: dict | None = None,
    config_style: str = "modern",
    drop_keys: list[str] | tuple[str, ...] = (),
    extra_config: dict | None = None,
) -> list[Path]:
    """Write the adapter into out_dir (fmt "safetensors" or "bin"), or with fmt "both" the
    safetensors one into out_dir and the .bin one into bin_out (default: out_dir + "-bin"),
    with identical values. Returns the directories written.

    override: config.json fields replaced before the shapes are taken (a misfit adapter).
    drop_keys: saved keys to leave out (e.g. a lora_B, for a broken adapter).
    extra_config: fields set in adapter_config.json after it is built (e.g. use_dora).
    """
    base = Path(base_dir)
    config = json.loads((base / "config.json").read_text())
    config.update(override or {})
    if isinstance(target_modules, (list, tuple)):
        target_modules = list(target_modules)
        for t in target_modules:
            if t not in ATTN + MLP and not any(n.endswith("." + t) or n == t
                                               for n in linear_modules(config)):
                raise ValueError(f"target module {t} is none of {ATTN + MLP}")
    elif not isinstance(target_modules, str):
        raise ValueError("target_modules must be a list of names or a regex string")
    if isinstance(target_modules, str) and layers_to_transform is not None:
        raise ValueError("layers_to_transform cannot be used when target_modules is a str")
    if bias not in ("none", "all", "lora_only"):
        raise ValueError(f"bias must be none, all or lora_only, not {bias}")
    rank_pattern = dict(rank_pattern or {})
    alpha_pattern = dict(alpha_pattern or {})
    if fmt not in ("safetensors", "bin", "both"):
        raise ValueError(f"format must be safetensors, bin or both, not {fmt}")

    tensors, adapted = make_tensors(
        config, target_modules=target_modules, r=r, lora_alpha=lora_alpha,
        use_rslora=use_rslora, modules_to_save=modules_to_save, rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern, layers_to_transform=layers_to_transform,
        layers_pattern=layers_pattern, seed=seed, strength=strength,
        adapter_name_in_keys=adapter_name_in_keys)
    if not adapted:
        raise ValueError("target_modules / layers_to_transform select no module of the model")
    missing = set(drop_keys) - {k for k, _ in tensors}
    if missing:
        raise ValueError(f"drop_keys not in the adapter: {sorted(missing)}")
    tensors = [(k, round_to_dtype(v, dtype)) for k, v in tensors if k not in set(drop_keys)]

    if base_model_name_or_path is None:
        base_model_name_or_path = str(base.resolve())
    cfg = adapter_config(
        base_model_name_or_path=base_model_name_or_path, target_modules=target_modules, r=r,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_rslora=use_rslora,
        fan_in_fan_out=fan_in_fan_out, bias=bias, modules_to_save=modules_to_save,
        rank_pattern=rank_pattern, alpha_pattern=alpha_pattern,
        layers_to_transform=layers_to_transform, layers_pattern=layers_pattern,
        config_style=config_style)
    cfg.update(extra_config or {})
    # PEFT writes json.dumps(..., indent=2, sort_keys=True).
    text = json.dumps(cfg, indent=2, sort_keys=True) + "\n"

    jobs = []
    if fmt in ("safetensors", "both"):
        jobs.append(("safetensors", Path(out_dir)))
    if fmt == "bin":
        jobs.append(("bin", Path(out_dir)))
    if fmt == "both":
        jobs.append(("bin", Path(bin_out) if bin_out else Path(str(out_dir) + "-bin")))
    for kind, d in jobs:
        d.mkdir(parents=True, exist_ok=True)
        for f in WEIGHT_FILES.values():  # never leave the other format's file behind
            (d / f).unlink(missing_ok=True)
        (d / "adapter_config.json").write_text(text)
        if kind == "safetensors":
            (d / WEIGHT_FILES[kind]).write_bytes(
                make_llama_fixture.safetensors_bytes(tensors, dtype))
        else:
            write_bin(d / WEIGHT_FILES[kind], tensors, dtype)
    return [d for _, d in jobs]


def _json_arg(text: str, what: str):
    try:
        return json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{what}: not JSON: {e}") from e


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("--override takes KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--base", required=True, help="the base model directory (its config.json)")
    ap.add_argument("--target-modules", default="q_proj,v_proj",
                    help="comma-separated names (a list), or with --target-regex a regex string")
    ap.add_argument("--target-regex", action="store_true",
                    help="write --target-modules as one regex string (re.fullmatch)")
    ap.add_argument("-r", "--r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--use-rslora", action="store_true")
    ap.add_argument("--fan-in-fan-out", action="store_true",
                    help="recorded only: PEFT ignores it for nn.Linear")
    ap.add_argument("--bias", choices=["none", "all", "lora_only"], default="none",
                    help="recorded only: LLaMA has no linear biases, so none are saved")
    ap.add_argument("--modules-to-save", default=None,
                    help="comma-separated: lm_head, embed_tokens")
    ap.add_argument("--rank-pattern", type=lambda t: _json_arg(t, "--rank-pattern"), default={},
                    help='JSON object, e.g. \'{"v_proj": 4}\'')
    ap.add_argument("--alpha-pattern", type=lambda t: _json_arg(t, "--alpha-pattern"),
                    default={})
    ap.add_argument("--layers-to-transform", default=None, help="comma-separated layer indices")
    ap.add_argument("--layers-pattern", default=None)
    ap.add_argument("--format", choices=["safetensors", "bin", "both"], default="safetensors")
    ap.add_argument("--bin-out", default=None, help="with --format both (default OUT_DIR-bin)")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--adapter-name-in-keys", action="store_true",
                    help="lora keys as ...lora_A.default.weight")
    ap.add_argument("--config-style", choices=["modern", "legacy"], default="modern",
                    help="legacy: PEFT 0.2's adapter_config.json (enable_lora, merge_weights)")
    ap.add_argument("--base-model-name-or-path", default=None,
                    help="recorded in the config (default: the base directory)")
    ap.add_argument("--override", type=_override, action="append", default=[],
                    help="KEY=VALUE of the base config.json, for an adapter that does not fit "
                         "(e.g. hidden_size=96, num_hidden_layers=3, vocab_size=400)")
    ap.add_argument("--drop-key", action="append", default=[],
                    help="leave this saved key out (a broken adapter)")
    ap.add_argument("--extra-config", type=lambda t: _json_arg(t, "--extra-config"), default={},
                    help='JSON object merged into adapter_config.json, e.g. \'{"use_dora": true}\'')
    ap.add_argument("--strength", type=float, default=0.5,
                    help="size of the LoRA term relative to W x")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    targets = a.target_modules if a.target_regex else [
        t for t in a.target_modules.split(",") if t]
    layers = None
    if a.layers_to_transform is not None:
        layers = [int(t) for t in a.layers_to_transform.split(",") if t.strip()]
    mts = [m for m in a.modules_to_save.split(",") if m] if a.modules_to_save else None
    try:
        dirs = make_adapter(
            a.out_dir, a.base, target_modules=targets, r=a.r, lora_alpha=a.lora_alpha,
            lora_dropout=a.lora_dropout, use_rslora=a.use_rslora,
            fan_in_fan_out=a.fan_in_fan_out, bias=a.bias, modules_to_save=mts,
            rank_pattern=a.rank_pattern, alpha_pattern=a.alpha_pattern,
            layers_to_transform=layers, layers_pattern=a.layers_pattern, fmt=a.format,
            bin_out=a.bin_out, dtype=a.dtype, adapter_name_in_keys=a.adapter_name_in_keys,
            seed=a.seed, strength=a.strength,
            base_model_name_or_path=a.base_model_name_or_path, override=dict(a.override),
            config_style=a.config_style, drop_keys=a.drop_key, extra_config=a.extra_config)
    except (ValueError, OSError, KeyError, re.error) as e:
        print(f"make_peft_adapter: {e}", file=sys.stderr)
        return 1
    for d in dirs:
        print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
