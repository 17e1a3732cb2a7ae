"""The Python module against the C++ API (tests/capi_reference.cpp), plus what only Python has:
the GIL released while computing, KeyboardInterrupt and cancel, streaming iterators that are
dropped halfway, exceptions with the C++ message. The ctypes layer is checked here too."""

from __future__ import annotations

import _thread
import gc
import importlib.util
import os
import re
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

import stackllama
from conftest import REFERENCE_SETTINGS

THREADS = REFERENCE_SETTINGS["n_threads"]
N_NEW = REFERENCE_SETTINGS["max_new_tokens"]
SCALE = REFERENCE_SETTINGS["adapter_scale"]


def n_os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def thread_baseline(model) -> int:
    """The process's thread count once OpenBLAS has started its pool (at the first prefill)."""
    stackllama.Generator(model).generate("warm up", max_new_tokens=2)
    gc.collect()
    return n_os_threads()


@pytest.fixture(scope="module")
def model(model_dir):
    return stackllama.Model(model_dir, n_threads=THREADS)


@pytest.fixture(scope="module")
def adapter(model, adapter_dir):
    return stackllama.Adapter(model, adapter_dir)


@pytest.fixture(scope="module")
def slow_model(slow_model_dir):
    return stackllama.Model(slow_model_dir, n_threads=THREADS)


# --- the module -------------------------------------------------------------------------------


def test_version_and_names():
    assert stackllama.__version__ == stackllama.version()
    assert stackllama.__version__.count(".") == 2
    for name in ("Model", "Adapter", "Tokenizer", "Generator", "GenerationConfig", "TextStream"):
        cls = getattr(stackllama, name)
        assert cls.__module__ == "stackllama"
        assert cls.__doc__ and len(cls.__doc__) > 40, name
    assert stackllama.Generator.generate.__doc__
    assert issubclass(stackllama.UnsupportedError, NotImplementedError)
    assert issubclass(stackllama.IoError, OSError)
    assert issubclass(stackllama.InvalidArgumentError, ValueError)


def test_stub_names_the_same_api():
    """The .pyi names everything the module exports."""
    stub = (Path(stackllama.__file__).parent / "__init__.pyi").read_text()
    for name in stackllama.__all__:
        if name != "__version__":
            assert f"class {name}" in stub or f"def {name}" in stub, name
    for method in ("generate", "stream", "attach", "detach", "eval", "cancel", "merge_adapters",
                   "generate_batch", "log_likelihood", "perplexity", "reward", "reward_batch",
                   "best_of_n"):
        assert f"def {method}" in stub


def test_the_issue_usage_block(model_dir, capsys):
    import stackllama

    model = stackllama.Model(str(model_dir), n_threads=2)
    gen = stackllama.Generator(model)  # adapters: gen.attach(stackllama.Adapter(model, dir), scale=1.0)
    text = gen.generate("", raw=True, max_new_tokens=200, do_sample=False)
    for piece in gen.stream("How do I sort a dict?", max_new_tokens=64, do_sample=True, temperature=0.9, top_p=0.95, top_k=100, seed=42):
        print(piece, end="")
    assert isinstance(text, str) and text
    printed = capsys.readouterr().out
    # The default model's tokenizer is trained on this project's docs, so its sampled answer can
    # be anything, an immediate EOS included: compare, without assuming it is not empty.
    assert printed == gen.generate("How do I sort a dict?", max_new_tokens=64, do_sample=True,
                                   temperature=0.9, top_p=0.95, top_k=100, seed=42)
    # With EOS banned the stream has pieces to print.
    banned = {model.tokenizer.eos_id: float("-inf")}
    pieces = list(gen.stream("How do I sort a dict?", max_new_tokens=16, do_sample=True,
                             temperature=0.9, top_p=0.95, top_k=100, seed=42, logit_bias=banned))
    assert pieces and "".join(pieces) == gen.generate(
        "How do I sort a dict?", max_new_tokens=16, do_sample=True, temperature=0.9, top_p=0.95,
        top_k=100, seed=42, logit_bias=banned)


# --- the same tokens and logits as the C++ API ------------------------------------------------


def _generator(model, adapter, case):
    if case == "merged":
        return stackllama.Generator(model.merge_adapters([(adapter, SCALE)]))
    gen = stackllama.Generator(model)
    if case == "adapter":
        gen.attach(adapter, scale=SCALE)
    return gen


@pytest.mark.parametrize("case", ["base", "adapter", "merged"])
def test_generate_matches_cpp(model, adapter, reference, case):
    gen = _generator(model, adapter, case)
    r = gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW, return_result=True)
    assert r.tokens == reference.tokens(case)
    assert r.text == reference.text(case)
    assert r.finish_reason in ("eos", "length")
    # The StackLLaMA template is what raw=False adds.
    question = reference.prompt[len("Question: "):-len("\n\nAnswer: ")]
    assert gen.generate(question, max_new_tokens=N_NEW) == reference.text(case)
    # Token ids as the prompt.
    assert gen.generate(reference.prompt_ids, max_new_tokens=N_NEW) == reference.text(case)
    # Streaming gives the same text, piece by piece.
    stream = gen.stream(question, max_new_tokens=N_NEW)
    pieces = list(stream)
    assert "".join(pieces) == reference.text(case)
    assert stream.result.tokens == reference.tokens(case)


@pytest.mark.parametrize("case", ["base", "adapter", "merged"])
def test_logits_match_cpp(model, adapter, reference, case):
    gen = _generator(model, adapter, case)
    logits = gen.eval(reference.prompt_ids, all_logits=True)
    assert logits.dtype == np.float32 and logits.shape == (len(reference.prompt_ids), model.n_vocab)
    np.testing.assert_array_equal(logits, reference.logits(case, model.n_vocab))
    gen.reset()
    last = gen.eval(reference.prompt_ids)
    assert last.shape == (model.n_vocab,)
    # The last row alone goes through matrix-vector kernels, not the prefill GEMM: close, not equal.
    np.testing.assert_allclose(last, logits[-1], rtol=1e-4, atol=1e-4)
    assert gen.n_past == len(reference.prompt_ids)
    assert gen.tokens == reference.prompt_ids


def test_sampling_matches_cpp(model, reference):
    gen = stackllama.Generator(model)
    question = reference.prompt[len("Question: "):-len("\n\nAnswer: ")]
    kw = dict(max_new_tokens=N_NEW, do_sample=True, temperature=0.9, top_k=100, top_p=0.95,
              seed=42)
    r = gen.generate(question, return_result=True, **kw)
    assert r.tokens == reference.tokens("sampled") and r.seed == 42
    assert r.text == reference.text("sampled")
    assert "".join(gen.stream(question, **kw)) == reference.text("sampled")
    cfg = stackllama.GenerationConfig(**kw)
    assert gen.generate(question, cfg) == reference.text("sampled")
    # Without a seed one is drawn, reported, and reproduces the run.
    del kw["seed"]
    r1 = gen.generate(question, return_result=True, **kw)
    assert gen.generate(question, return_result=True, seed=r1.seed, **kw).tokens == r1.tokens


def test_logprobs_and_scoring(model, reference):
    gen = stackllama.Generator(model)
    r = gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW, return_result=True)
    assert r.logprobs.dtype == np.float32
    np.testing.assert_array_equal(r.logprobs, reference.floats("base.logprobs.f32"))
    scored = gen.log_likelihood(reference.prompt_ids, reference.tokens("base"))
    assert scored.tokens == reference.tokens("base")
    np.testing.assert_allclose(scored.logprobs, r.logprobs, atol=1e-3)
    assert abs(scored.sum - float(np.sum(scored.logprobs, dtype=np.float64))) < 1e-3
    assert gen.score is not None
    text_score = gen.score("Question: how", " do I sort")
    assert len(text_score.tokens) > 0 and text_score.sum < 0
    assert gen.perplexity(reference.prompt) > 1.0
    assert gen.perplexity(reference.prompt_ids) > 1.0
    with pytest.raises(stackllama.InvalidArgumentError):
        gen.perplexity([1])
    assert gen.n_past == 0  # scoring leaves an empty sequence


def test_rewards_and_best_of_n(model, adapter, rm_adapter_dir, reference):
    rm = stackllama.Adapter(model, rm_adapter_dir)
    gen = stackllama.Generator(model)
    with pytest.raises(stackllama.UnsupportedError):
        gen.reward(reference.prompt)  # a causal LM has no score head
    gen.attach(rm)
    full = reference.prompt + reference.text("base")
    reward = gen.reward(full)
    assert reward.dtype == np.float32 and reward.shape == (1,)
    np.testing.assert_array_equal(reward, reference.floats("reward.f32"))
    batch = gen.reward_batch([full, reference.prompt])
    assert batch.shape == (2, 1)
    np.testing.assert_allclose(batch[0], reward, atol=1e-4)
    gen.detach(rm)

    kw = dict(do_sample=True, temperature=0.9, seed=42, num_return_sequences=3, max_new_tokens=16)
    expected = reference.best_of_n()
    answers = gen.best_of_n(reference.prompt, policy_adapters=[(adapter, SCALE)],
                            reward_adapters=[rm], **kw)
    assert [(a.index, float(a.reward[0]), a.answer.tokens) for a in answers] == expected
    assert gen.attached == []  # restored
    policy, judge = stackllama.Generator(model), stackllama.Generator(model)
    policy.attach(adapter, SCALE)
    judge.attach(rm)
    answers = policy.best_of_n(reference.prompt, reward_model=judge, **kw)
    assert [a.index for a in answers] == [e[0] for e in expected]
    np.testing.assert_allclose([a.reward[0] for a in answers], [e[1] for e in expected],
                               atol=1e-4)
    with pytest.raises(TypeError):
        gen.best_of_n(reference.prompt, **kw)


def test_generate_batch(model, reference):
    gen = stackllama.Generator(model)
    question = reference.prompt[len("Question: "):-len("\n\nAnswer: ")]
    seen = {}
    rs = gen.generate_batch([question, question], max_new_tokens=N_NEW, do_sample=True,
                            temperature=0.9, top_k=100, top_p=0.95, seed=42,
                            num_return_sequences=2,
                            on_token=lambda seq, piece, tok: seen.setdefault(seq, []).append(piece))
    assert len(rs) == 4
    assert rs[0].tokens == rs[2].tokens == reference.tokens("sampled")
    assert [r.seed for r in rs] == [42, 43, 42, 43]
    # A sequence that ends at once (EOS: the tiny model's tokenizer follows the docs) never calls
    # on_token.
    assert ["".join(seen.get(i, [])) for i in range(4)] == [r.text for r in rs]
    # With EOS banned every sequence calls it.
    seen.clear()
    rs = gen.generate_batch([question, question], max_new_tokens=N_NEW, do_sample=True,
                            temperature=0.9, top_k=100, top_p=0.95, seed=42,
                            num_return_sequences=2, logit_bias={model.tokenizer.eos_id: float("-inf")},
                            on_token=lambda seq, piece, tok: seen.setdefault(seq, []).append(piece))
    assert sorted(seen) == [0, 1, 2, 3]
    assert ["".join(seen[i]) for i in range(4)] == [r.text for r in rs]
    greedy = gen.generate_batch([reference.prompt_ids, reference.prompt_ids],
                                max_new_tokens=N_NEW)
    assert [r.tokens for r in greedy] == [reference.tokens("base")] * 2
    with pytest.raises(TypeError, match="all text"):
        gen.generate_batch(["a", [1, 2]])


def test_stop_strings(model, reference):
    gen = stackllama.Generator(model)
    text = reference.text("base")
    stop = text[len(text) // 2:len(text) // 2 + 3]
    r = gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW, stop_strings=[stop],
                     return_result=True)
    assert r.finish_reason == "stop_string" and r.stop_string == stop
    assert stop not in r.text and text.startswith(r.text)


def test_tokenizer(model, model_dir, reference):
    tok = model.tokenizer
    assert tok.encode(reference.prompt) == reference.prompt_ids
    line = "How do I sort a dict?"  # this tokenizer normalises newlines to spaces
    assert tok.decode(tok.encode(line)) == line
    assert tok.bos_id == 1 and tok.eos_id == 2 and len(tok) == model.n_vocab == tok.n_vocab
    assert tok.id_to_piece(1) == "<s>" and tok.piece_to_id("<s>") == 1
    assert tok.piece_to_id("not a piece at all") == -1
    own = stackllama.Tokenizer(model_dir)
    assert own.encode(reference.prompt, add_special=False) == reference.prompt_ids[1:]
    with pytest.raises(stackllama.InvalidArgumentError, match="vocabulary|outside|range"):
        tok.decode([10**6])


# --- adapters ---------------------------------------------------------------------------------


def test_adapters(model, adapter, adapter_dir, reference):
    assert adapter.path == str(adapter_dir)
    assert adapter.config["r"] == 4 and adapter.config["lora_alpha"] == 8.0
    assert "model.layers.0.self_attn.q_proj" in adapter.lora_modules
    gen = stackllama.Generator(model)
    gen.attach(adapter, scale=SCALE)
    assert [(a.path, s) for a, s in gen.attached] == [(adapter.path, SCALE)]
    with pytest.raises(stackllama.InvalidArgumentError, match="already attached"):
        gen.attach(adapter)
    gen.detach(adapter)
    assert gen.attached == []
    with pytest.raises(stackllama.InvalidArgumentError, match="not attached"):
        gen.detach(adapter)
    assert gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW) == reference.text("base")
    gen.attach(adapter, SCALE)
    gen.detach_all()
    assert gen.attached == []


# --- errors -----------------------------------------------------------------------------------


def test_quantize_at_load(model_dir):
    q8 = stackllama.Model(model_dir, quantize="q8")
    assert q8.weight_dtype == "q8"
    full = stackllama.Model(model_dir)
    assert q8.weight_bytes < full.weight_bytes
    a = stackllama.Generator(full).eval([1, 5, 9])
    b = stackllama.Generator(q8).eval([1, 5, 9])
    assert a.shape == b.shape
    err = float(abs(a - b).max()) / float(abs(a).max())
    assert 0 < err < 0.1  # quantized, but close
    with pytest.raises(ValueError, match="quantize"):
        stackllama.Model(model_dir, quantize="q5")


def test_errors_carry_the_cpp_message(model, tmp_path):
    with pytest.raises(stackllama.IoError) as e:
        stackllama.Model(tmp_path / "no-such-model")
    assert "no-such-model" in str(e.value) and e.value.code == 2
    assert isinstance(e.value, OSError) and isinstance(e.value, stackllama.Error)
    with pytest.raises(stackllama.IoError, match="adapter"):
        stackllama.Adapter(model, tmp_path)
    gen = stackllama.Generator(model, n_ctx=8)
    assert gen.n_ctx == 8
    with pytest.raises(stackllama.OutOfRangeError, match="n_ctx"):
        gen.generate("a question much longer than eight tokens, surely", max_new_tokens=4)
    with pytest.raises(stackllama.InvalidArgumentError, match="vocabulary"):
        gen.eval([10**6])
    with pytest.raises(stackllama.InvalidArgumentError, match="max_new_tokens"):
        gen.generate("x", max_new_tokens=-1)
    with pytest.raises(TypeError, match="no_such_option"):
        gen.generate("x", no_such_option=1)
    with pytest.raises(stackllama.InvalidArgumentError):
        stackllama.Generator(model, n_ctx=-1)


def test_wrong_python_types_are_type_errors_that_say_what_was_expected(model, adapter):
    # pybind11's own cast error says only "Unable to cast Python instance to C++ type".
    gen = stackllama.Generator(model)
    for kw, words in ((dict(temperature="hot"),
                       "GenerationConfig.temperature must be a float, got 'hot' (str)"),
                      (dict(max_new_tokens=2.5), "max_new_tokens must be an int, got 2.5 (float)"),
                      (dict(seed=-1), "seed must be an int >= 0, or None, got -1 (int)"),
                      (dict(eos_token_id="</s>"), "eos_token_id must be a token id (int), a list"),
                      (dict(logit_bias=[1, 2]), "logit_bias must be a dict")):
        with pytest.raises(TypeError, match=re.escape(words)):
            gen.generate("x", **kw)
    cfg = stackllama.GenerationConfig()
    with pytest.raises(TypeError, match="top_k must be an int"):
        cfg.top_k = "many"
    assert cfg.top_k == 50  # unchanged
    for call, words in ((lambda: gen.generate(123),
                         "prompt must be str or a sequence of token ids"),
                        (lambda: gen.generate([1, "two"]), "got [1, 'two'] (list)"),
                        (lambda: gen.generate([1, 2**40]), "token ids (int32)"),
                        (lambda: gen.perplexity(3.5), "perplexity: text must be"),
                        (lambda: gen.log_likelihood([1, 2], None), "log_likelihood: continuation"),
                        (lambda: gen.reward(None), "reward: text must be"),
                        (lambda: gen.attach("adapter"),
                         "attach: adapter must be an Adapter, got 'adapter' (str)"),
                        (lambda: gen.best_of_n("x", policy_adapters=[(adapter, "half")],
                                               reward_adapters=[adapter]),
                         "(Adapter, scale) tuple, got")):
        with pytest.raises(TypeError, match=re.escape(words)):
            call()
    # on_token's result is read by Python's truth test: 0 stops, a non-empty str does not.
    for result, n in ((0, 1), ("yes", 3)):
        calls = []
        gen.generate("x", max_new_tokens=3, logit_bias={model.tokenizer.eos_id: float("-inf")},
                     on_token=lambda piece, tok: calls.append(tok) or result)
        assert len([t for t in calls if t >= 0]) == n


def test_generation_config(model, reference):
    cfg = stackllama.GenerationConfig(max_new_tokens=5)
    assert cfg.max_new_tokens == 5 and cfg.do_sample is False and cfg.temperature == 1.0
    assert cfg.top_k == 50 and cfg.top_p == 1.0 and cfg.seed is None
    assert cfg.eos_token_id is None and cfg.use_model_eos is True
    assert cfg.min_p == 0.0 and cfg.typical_p == 1.0 and cfg.repetition_penalty == 1.0
    assert cfg.presence_penalty == 0.0 and cfg.frequency_penalty == 0.0
    assert cfg.no_repeat_ngram_size == 0 and cfg.logit_bias == {} and cfg.stop_strings == []
    assert cfg.num_return_sequences == 1
    cfg2 = stackllama.GenerationConfig(logit_bias={3: -1.5}, stop_strings="\n\n", seed=7)
    assert cfg2.logit_bias == {3: -1.5} and cfg2.stop_strings == ["\n\n"] and cfg2.seed == 7
    assert set(cfg.to_dict()) >= {"max_new_tokens", "do_sample", "temperature", "top_k", "top_p",
                                  "seed", "eos_token_id"}
    assert "max_new_tokens=5" in repr(cfg)
    gen = stackllama.Generator(model)
    r = gen.generate(reference.prompt, cfg, raw=True, return_result=True)
    assert r.tokens == reference.tokens("base")[:5] and r.finish_reason == "length"
    # Keyword arguments override the config's fields.
    r = gen.generate(reference.prompt, cfg, raw=True, max_new_tokens=7, return_result=True)
    assert len(r.tokens) == 7
    stop = reference.tokens("base")[2]
    r = gen.generate(reference.prompt, raw=True, eos_token_id=stop, return_result=True)
    assert r.tokens[-1] == stop and r.finish_reason == "eos"
    cfg.eos_token_id = [stop]
    assert cfg.eos_token_id == [stop]


def test_on_token_callback(model, reference):
    gen = stackllama.Generator(model)
    seen = []
    r = gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW, return_result=True,
                     on_token=lambda piece, token: seen.append((piece, token)) or len(seen) < 3)
    assert r.finish_reason == "cancelled" and len(r.tokens) == 3
    assert [t for _, t in seen if t >= 0] == reference.tokens("base")[:3]

    def boom(piece, token):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        gen.generate(reference.prompt, raw=True, on_token=boom)
    assert gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW) == reference.text("base")


# --- threads, interrupts and streams ----------------------------------------------------------


def test_gil_is_released_while_generating(slow_model):
    gen = stackllama.Generator(slow_model, n_ctx=512)
    inside = threading.Event()
    done = threading.Event()

    def work():
        inside.set()
        gen.generate([1], max_new_tokens=150, use_model_eos=False)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    inside.wait()
    spins = 0
    while not done.is_set():
        spins += 1  # runs only while the other thread does not hold the GIL
    t.join()
    assert gen.n_past >= 150
    assert spins > 10000, f"the main thread ran only {spins} loop turns during generate()"


def test_keyboard_interrupt_stops_generate(slow_model):
    gen = stackllama.Generator(slow_model)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    t0 = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        gen.generate([1], max_new_tokens=3000, use_model_eos=False)
    elapsed = time.monotonic() - t0
    timer.join()
    assert 0 < gen.n_past < 3000, "stopped early, the tokens so far kept"
    assert elapsed < 5.0, f"Ctrl-C took {elapsed:.1f} s to stop generation"
    # The generator is free and works again.
    assert len(gen.generate([1], max_new_tokens=3, return_result=True).tokens) == 3


def test_cancel_from_another_thread(slow_model):
    gen = stackllama.Generator(slow_model)
    timer = threading.Timer(0.2, gen.cancel)
    timer.start()
    r = gen.generate([1], max_new_tokens=3000, use_model_eos=False, return_result=True)
    timer.join()
    assert r.finish_reason == "cancelled" and 0 < len(r.tokens) < 3000


def test_stream_cancel_and_close(model, reference):
    gen = stackllama.Generator(model)
    stream = gen.stream(reference.prompt, raw=True, max_new_tokens=500, use_model_eos=False)
    first = [next(stream) for _ in range(3)]
    assert all(isinstance(p, str) for p in first)
    gen.cancel()
    rest = list(stream)  # what was queued, then the end
    assert len(first) + len(rest) < 500
    assert stream.result.finish_reason == "cancelled"
    with gen.stream(reference.prompt, raw=True, max_new_tokens=500, use_model_eos=False) as s:
        next(s)
    assert list(s) == []  # closed: cancelled and ended
    assert gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW) == reference.text("base")


def test_generator_is_busy_while_a_stream_runs(model, reference):
    gen = stackllama.Generator(model)
    stream = gen.stream(reference.prompt, raw=True, max_new_tokens=500, use_model_eos=False)
    next(stream)
    with pytest.raises(ValueError, match="busy"):
        gen.generate("x")
    stream.close()
    assert gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW) == reference.text("base")


def test_abandoned_stream_frees_its_generator(model, reference):
    baseline = thread_baseline(model)
    gen = stackllama.Generator(model)
    gen_ref = weakref.ref(gen)
    stream = gen.stream(reference.prompt, raw=True, max_new_tokens=800, use_model_eos=False)
    assert next(stream)
    assert n_os_threads() > baseline  # the worker (and the generator's pool)
    del gen  # the stream keeps the generator alive while it runs...
    assert gen_ref() is not None
    del stream  # ...and dropping it halfway cancels the worker and releases the generator
    gc.collect()
    assert gen_ref() is None
    deadline = time.monotonic() + 5
    while n_os_threads() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    assert n_os_threads() == baseline


def test_keyboard_interrupt_while_streaming(model, reference):
    baseline = thread_baseline(model)
    gen = stackllama.Generator(model)
    received = 0
    with pytest.raises(KeyboardInterrupt):
        for _ in gen.stream(reference.prompt, raw=True, max_new_tokens=800, use_model_eos=False):
            received += 1
            if received == 3:
                _thread.interrupt_main()  # as Ctrl-C would
    assert received >= 3
    gc.collect()
    assert gen.generate(reference.prompt, raw=True, max_new_tokens=N_NEW) == reference.text("base")
    del gen
    gc.collect()
    assert n_os_threads() == baseline


def _generate_on_threads(make_generator, prompt, n):
    """n generators, each made and run on a thread of its own, at once; their texts."""
    results = [None] * n

    def work(i):
        results[i] = make_generator(i).generate(prompt, raw=True, max_new_tokens=N_NEW)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_generators_on_threads_share_a_model(model, reference):
    results = _generate_on_threads(lambda i: stackllama.Generator(model), reference.prompt, 4)
    assert results == [reference.text("base")] * len(results)


def test_generators_on_threads_share_a_worker_pool(model, reference):
    pool = stackllama.WorkerPool(model.n_threads)
    assert pool.n_threads == model.n_threads
    assert "n_threads=" in repr(pool)
    gens = [stackllama.Generator(model, pool=pool) for _ in range(4)]
    del pool  # the generators keep it
    results = _generate_on_threads(lambda i: gens[i], reference.prompt, len(gens))
    assert results == [reference.text("base")] * len(results)
    assert stackllama.Generator(model, pool=None).generate(
        reference.prompt, raw=True, max_new_tokens=N_NEW) == reference.text("base")
    for bad in (-1, 1025):
        with pytest.raises(stackllama.InvalidArgumentError, match="n_threads"):
            stackllama.WorkerPool(bad)
    with pytest.raises(TypeError):
        stackllama.Generator(model, pool="four threads")


# --- real data --------------------------------------------------------------------------------


def test_stories260k_golden_output(shared_data):
    d = shared_data / "stories260K-hf"
    model = stackllama.Model(d, n_threads=2)
    text = stackllama.Generator(model).generate("", raw=True, max_new_tokens=200, do_sample=False)
    assert text == (d / "expected_greedy_200.txt").read_text(encoding="utf-8")


# --- the C ABI through ctypes (examples/python/ffi_ctypes.py) ---------------------------------


@pytest.fixture(scope="module")
def ctypes_api(source_dir):
    lib = os.environ.get("STACKLLAMA_LIB")
    if not lib or not Path(lib).exists():
        pytest.skip("STACKLLAMA_LIB is not set; run through ctest")
    spec = importlib.util.spec_from_file_location(
        "ffi_ctypes", source_dir / "examples" / "python" / "ffi_ctypes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.CApi(lib)


@pytest.mark.parametrize("case", ["base", "adapter", "merged"])
def test_ctypes_matches_cpp(ctypes_api, model_dir, adapter_dir, reference, case):
    mod, api = ctypes_api
    assert api.version() == stackllama.__version__
    model = mod.Model(api, str(model_dir), n_threads=THREADS)
    assert model.encode(reference.prompt) == reference.prompt_ids
    adapter = mod.Adapter(model, str(adapter_dir))
    target = model.merge(adapter, SCALE) if case == "merged" else model
    gen = mod.Generator(target)
    if case == "adapter":
        gen.attach(adapter, SCALE)
    pieces = []
    text, tokens, _ = gen.generate(reference.prompt, pieces.append, max_new_tokens=N_NEW)
    assert tokens == reference.tokens(case)
    assert text.decode("utf-8") == reference.text(case) and b"".join(pieces) == text
    logits = np.array(gen.eval_all(reference.prompt_ids), dtype=np.float32)
    np.testing.assert_array_equal(logits, reference.logits(case, model.n_vocab))
    if case == "adapter":
        with pytest.raises(mod.StackllamaError, match="still attached") as e:
            adapter.free()
        assert e.value.status == 1
        gen.detach(adapter)
    adapter.free()


def test_ctypes_sampling_matches_cpp(ctypes_api, model_dir, reference):
    mod, api = ctypes_api
    gen = mod.Generator(mod.Model(api, str(model_dir), n_threads=THREADS))
    _, tokens, _ = gen.generate(reference.prompt, max_new_tokens=N_NEW, do_sample=1,
                                temperature=0.9, top_k=100, top_p=0.95, seed=42)
    assert tokens == reference.tokens("sampled")


def test_ctypes_params_struct_sizes(ctypes_api):
    """The ctypes mirrors of the params structs have the library's layout: _init accepts their
    sizes, and refuses a larger one."""
    mod, api = ctypes_api
    import ctypes

    p = api.generation_params(max_new_tokens=3)
    assert p.struct_size == ctypes.sizeof(p) == 128
    assert p.use_model_eos == 1 and p.temperature == 1.0 and p.top_k == 50
    buf = ctypes.create_string_buffer(ctypes.sizeof(p) + 8)
    status = api.lib.stackllama_generation_params_init(
        ctypes.cast(buf, ctypes.POINTER(mod.GenerationParams)), ctypes.sizeof(p) + 8)
    assert status == 1 and b"newer" in api.lib.stackllama_last_error()
