#!/usr/bin/env node
// Answers a question through stackllama's C ABI from Node.js, with the koffi FFI package from npm
// (`npm install` in this folder), streaming the answer to stdout.
//
//   node answer.mjs --lib PATH/libstackllama.so -m MODEL [-p QUESTION] [-n N] [-t THREADS]
//                   [--raw] [--lora DIR [--lora-scale S]] [--temp T [--seed N]]
//
// Importable: openStackllama(libPath) gives the bound functions and small helpers (the test suite
// uses them to compare tokens and logits with the C++ API).
import koffi from 'koffi';
import { pathToFileURL } from 'node:url';

export const OK = 0;
export const FINISH_REASONS = ['eos', 'length', 'stop_string', 'cancelled'];

export function openStackllama(libPath) {
  const lib = koffi.load(libPath);
  // Opaque handles, as in stackllama.h.
  koffi.opaque('stackllama_model');
  koffi.opaque('stackllama_adapter');
  koffi.opaque('stackllama_tokenizer');
  koffi.opaque('stackllama_generator');
  koffi.opaque('stackllama_result');
  koffi.struct('stackllama_model_params', {
    struct_size: 'uint32_t', n_threads: 'int32_t', load_tokenizer: 'int32_t', verbose: 'int32_t',
    verify_checksums: 'int32_t', reserved0: 'int32_t',
  });
  koffi.struct('stackllama_generation_params', {
    struct_size: 'uint32_t', max_new_tokens: 'int32_t', do_sample: 'int32_t', temperature: 'float',
    top_k: 'int32_t', top_p: 'float', min_p: 'float', typical_p: 'float',
    repetition_penalty: 'float', presence_penalty: 'float', frequency_penalty: 'float',
    no_repeat_ngram_size: 'int32_t', has_seed: 'int32_t', num_return_sequences: 'int32_t',
    seed: 'uint64_t', eos_token_ids: 'const int32_t *', n_eos_token_ids: 'size_t',
    use_model_eos: 'int32_t', reserved0: 'int32_t', stop_strings: 'const char **',
    n_stop_strings: 'size_t', logit_bias_tokens: 'const int32_t *',
    logit_bias_values: 'const float *', n_logit_bias: 'size_t',
  });
  koffi.proto('bool stackllama_token_callback(const char *piece, size_t piece_len, ' +
              'int32_t token, void *user_data)');

  const f = (sig) => lib.func(sig);
  const c = {
    version: f('const char *stackllama_version(void)'),
    last_error: f('const char *stackllama_last_error(void)'),
    model_params_init: f('int stackllama_model_params_init(_Out_ stackllama_model_params *p, size_t size)'),
    model_load: f('int stackllama_model_load(const char *path, const stackllama_model_params *p, _Out_ stackllama_model **out)'),
    model_free: f('void stackllama_model_free(stackllama_model *m)'),
    model_n_vocab: f('int32_t stackllama_model_n_vocab(const stackllama_model *m)'),
    model_get_tokenizer: f('int stackllama_model_get_tokenizer(const stackllama_model *m, _Out_ stackllama_tokenizer **out)'),
    tokenizer_free: f('void stackllama_tokenizer_free(stackllama_tokenizer *t)'),
    tokenizer_encode: f('int stackllama_tokenizer_encode(const stackllama_tokenizer *t, const char *text, bool add_special, _Out_ int32_t *ids, size_t cap, _Out_ size_t *n)'),
    adapter_load: f('int stackllama_adapter_load(const stackllama_model *m, const char *dir, _Out_ stackllama_adapter **out)'),
    adapter_free: f('int stackllama_adapter_free(stackllama_adapter *a)'),
    model_merge_adapters: f('int stackllama_model_merge_adapters(const stackllama_model *base, stackllama_adapter **adapters, const float *scales, size_t n, _Out_ stackllama_model **out)'),
    generator_create: f('int stackllama_generator_create(const stackllama_model *m, const void *params, _Out_ stackllama_generator **out)'),
    generator_free: f('void stackllama_generator_free(stackllama_generator *g)'),
    generator_reset: f('int stackllama_generator_reset(stackllama_generator *g)'),
    generator_attach: f('int stackllama_generator_attach(stackllama_generator *g, stackllama_adapter *a, float scale)'),
    generator_detach: f('int stackllama_generator_detach(stackllama_generator *g, stackllama_adapter *a)'),
    generator_eval: f('int stackllama_generator_eval(stackllama_generator *g, const int32_t *ids, size_t n, bool all, _Out_ float **logits, _Out_ size_t *rows)'),
    generation_params_init: f('int stackllama_generation_params_init(_Out_ stackllama_generation_params *p, size_t size)'),
    generator_generate: f('int stackllama_generator_generate(stackllama_generator *g, const char *prompt, const stackllama_generation_params *p, stackllama_token_callback *cb, void *ud, _Out_ stackllama_result **out)'),
    result_free: f('void stackllama_result_free(stackllama_result *r)'),
    result_text: f('const char *stackllama_result_text(const stackllama_result *r)'),
    result_tokens: f('const int32_t *stackllama_result_tokens(const stackllama_result *r)'),
    result_n_tokens: f('size_t stackllama_result_n_tokens(const stackllama_result *r)'),
    result_finish_reason: f('int stackllama_result_finish_reason(const stackllama_result *r)'),
  };

  const check = (status) => {
    if (status !== OK) throw new Error(`stackllama: ${c.last_error()} (status ${status})`);
  };
  const out = () => [null];

  return {
    c,
    check,
    version: () => c.version(),
    loadModel(path, nThreads = 0) {
      const p = {};
      check(c.model_params_init(p, koffi.sizeof('stackllama_model_params')));
      p.n_threads = nThreads;
      const m = out();
      check(c.model_load(path, p, m));
      return m[0];
    },
    encode(model, text) {
      const t = out();
      check(c.model_get_tokenizer(model, t));
      try {
        const n = [0];
        check(c.tokenizer_encode(t[0], text, true, null, 0, n)); // the size query
        const ids = new Int32Array(Number(n[0]));
        check(c.tokenizer_encode(t[0], text, true, ids, ids.length, n));
        return Array.from(ids);
      } finally {
        c.tokenizer_free(t[0]);
      }
    },
    loadAdapter(model, dir) {
      const a = out();
      check(c.adapter_load(model, dir, a));
      return a[0];
    },
    mergeAdapter(model, adapter, scale) {
      const m = out();
      check(c.model_merge_adapters(model, [adapter], [scale], 1, m));
      return m[0];
    },
    createGenerator(model) {
      const g = out();
      check(c.generator_create(model, null, g));
      return g[0];
    },
    // Logits of every id of a fresh sequence, as one Float32Array (rows x n_vocab).
    evalAll(gen, model, ids) {
      check(c.generator_reset(gen));
      const logits = out();
      const rows = [0];
      check(c.generator_eval(gen, Int32Array.from(ids), ids.length, true, logits, rows));
      const n = Number(rows[0]) * c.model_n_vocab(model);
      return Float32Array.from(koffi.decode(logits[0], 'float', n));
    },
    // Streams pieces to onPiece(piece); returns {text, tokens, finishReason}. `options` sets
    // fields of stackllama_generation_params (seed also sets has_seed).
    generate(gen, prompt, maxNewTokens, onPiece = null, options = {}) {
      const p = {};
      check(c.generation_params_init(p, koffi.sizeof('stackllama_generation_params')));
      p.max_new_tokens = maxNewTokens;
      Object.assign(p, options);
      if ('seed' in options) p.has_seed = 1;
      check(c.generator_reset(gen));
      const r = out();
      const cb = (piece, pieceLen, token, userData) => {
        if (onPiece) onPiece(piece);
        return true; // false would stop generation
      };
      check(c.generator_generate(gen, prompt, p, cb, null, r));
      try {
        const n = Number(c.result_n_tokens(r[0]));
        const tokens = n ? Array.from(koffi.decode(c.result_tokens(r[0]), 'int32_t', n)) : [];
        return { text: c.result_text(r[0]), tokens,
                 finishReason: FINISH_REASONS[c.result_finish_reason(r[0])] };
      } finally {
        c.result_free(r[0]);
      }
    },
  };
}

function parseArgs(argv) {
  const o = { lib: process.env.STACKLLAMA_LIB || 'libstackllama.so.0', prompt: 'How do I sort a dict?',
              n: 128, threads: 0, raw: false, lora: null, loraScale: 1.0, temp: 0, seed: null };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const v = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    if (a === '--lib') o.lib = v();
    else if (a === '-m') o.model = v();
    else if (a === '-p') o.prompt = v();
    else if (a === '-n') o.n = Number(v());
    else if (a === '-t') o.threads = Number(v());
    else if (a === '--raw') o.raw = true;
    else if (a === '--lora') o.lora = v();
    else if (a === '--lora-scale') o.loraScale = Number(v());
    else if (a === '--temp') o.temp = Number(v());
    else if (a === '--seed') o.seed = Number(v());
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.model) throw new Error('usage: answer.mjs --lib LIB -m MODEL [-p Q] [-n N] [-t T] [--raw] [--lora DIR [--lora-scale S]] [--temp T [--seed N]]');
  return o;
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  const sl = openStackllama(o.lib);
  const model = sl.loadModel(o.model, o.threads);
  const gen = sl.createGenerator(model);
  let adapter = null;
  if (o.lora) {
    adapter = sl.loadAdapter(model, o.lora);
    sl.check(sl.c.generator_attach(gen, adapter, o.loraScale));
  }
  const prompt = o.raw ? o.prompt : `Question: ${o.prompt}\n\nAnswer: `;
  const options = o.temp > 0 ? { do_sample: 1, temperature: o.temp } : {};
  if (o.seed !== null) options.seed = o.seed;
  const r = sl.generate(gen, prompt, o.n, (piece) => process.stdout.write(piece), options);
  process.stderr.write(`\nanswer.mjs: stackllama ${sl.version()}, ${r.tokens.length} tokens, ` +
                       `finished by ${r.finishReason}\n`);
  sl.c.generator_free(gen); // detaches the adapter
  if (adapter) sl.check(sl.c.adapter_free(adapter));
  sl.c.model_free(model);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main();
  } catch (e) {
    process.stderr.write(`answer.mjs: ${e.message}\n`);
    process.exitCode = 1;
  }
}
