/* stackllama.h: the stable C ABI of stackllama (since 0.1).
 *
 *   #include <stackllama/stackllama.h>
 *
 *   stackllama_model *model = NULL;
 *   stackllama_generator *gen = NULL;
 *   if (stackllama_model_load("path/to/hf-dir", NULL, &model) != STACKLLAMA_OK ||
 *       stackllama_generator_create(model, NULL, &gen) != STACKLLAMA_OK)
 *       fprintf(stderr, "%s\n", stackllama_last_error());
 *   stackllama_generation_params gp;
 *   stackllama_generation_params_init(&gp, sizeof gp);
 *   gp.max_new_tokens = 64;                              (greedy unless gp.do_sample = 1)
 *   stackllama_generator_generate(gen, "Question: What is RoPE?\n\nAnswer: ", &gp,
 *                                 print_piece, NULL, NULL);   (streams to print_piece)
 *   stackllama_generator_free(gen);
 *   stackllama_model_free(model);
 *
 * Conventions (../shared/STYLE.md sections 1 to 4):
 *  - Handles are opaque. Every handle a function gives out is freed with its own *_free, and every
 *    *_free accepts NULL. Order does not matter: a generator or adapter keeps its model alive, so a
 *    model handle may be freed first. The one exception: an adapter still attached to a generator
 *    cannot be freed (stackllama_adapter_free refuses, with a message).
 *  - Every fallible function returns a stackllama_status and writes results through out_
 *    parameters, which are left unchanged on failure (except the size of the size-query
 *    convention below). On failure stackllama_last_error() gives a
 *    message naming the file, tensor or value at fault. No C++ exception ever crosses this header.
 *  - Params structs start with uint32_t struct_size and are filled by their *_init function,
 *    which is given sizeof the caller's struct and writes only that much (so a caller built
 *    against an older header, with a smaller struct, is safe to run with a newer library). They
 *    are passed by const pointer (NULL = all defaults) and only ever grow at the end: the library
 *    uses its defaults for fields beyond the caller's struct_size, and refuses a struct_size larger
 *    than it knows (a caller built against a newer header) with STACKLLAMA_ERROR_INVALID_ARGUMENT.
 *    Fields are 4 or 8 bytes and laid out without padding, so every version's struct_size ends on
 *    a field; flags are int32_t (0 or 1); reserved fields must be 0.
 *  - Strings given in are NUL-terminated UTF-8. Strings given out are NUL-terminated and owned by
 *    the handle they come from (valid until it is freed or, for generators, changed).
 *  - Variable-size outputs copied into caller buffers follow one size-query convention: call with
 *    buf = NULL and capacity 0 to get the size needed in *out_len (status OK); with a buffer that
 *    is too small the call writes nothing, returns STACKLLAMA_ERROR_BUFFER_TOO_SMALL and still
 *    sets *out_len to the size needed.
 *  - Thread-safety: as in C++. A model, an adapter and a tokenizer may be used from any number of
 *    threads at once; a generator by one thread at a time (stackllama_generator_cancel excepted;
 *    a second call while one runs is refused), and it must not be freed while a call on it runs.
 *  - Functions are tagged with the version they appeared in. Entry points whose signature may
 *    still change are declared only when STACKLLAMA_EXPERIMENTAL is defined.
 */
#ifndef STACKLLAMA_H
#define STACKLLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* STACKLLAMA_VERSION_MAJOR / _MINOR / _PATCH / _STRING / _NUMBER, generated from the project
 * version by CMake (capi/stackllama_version.h.in). Macros only; it includes nothing. */
#include "stackllama/stackllama_version.h"

#if defined(STACKLLAMA_STATIC)
#define STACKLLAMA_CAPI
#elif defined(_WIN32)
#if defined(STACKLLAMA_BUILDING)
#define STACKLLAMA_CAPI __declspec(dllexport)
#else
#define STACKLLAMA_CAPI __declspec(dllimport)
#endif
#else
#define STACKLLAMA_CAPI __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Status codes. Values are pinned forever; 1..99 are stackllama::ErrorCode's.                 */

typedef enum stackllama_status {
    STACKLLAMA_OK = 0,
    STACKLLAMA_ERROR_INVALID_ARGUMENT = 1, /* a bad value: NULL, out of range, bad struct_size */
    STACKLLAMA_ERROR_IO = 2,               /* a file could not be opened, read or mapped */
    STACKLLAMA_ERROR_FORMAT = 3,           /* a file is malformed, truncated or inconsistent */
    STACKLLAMA_ERROR_UNSUPPORTED = 4,      /* valid, but something stackllama does not do */
    STACKLLAMA_ERROR_OUT_OF_RANGE = 5,     /* e.g. a prompt longer than the context */
    STACKLLAMA_ERROR_OUT_OF_MEMORY = 6,
    STACKLLAMA_ERROR_CANCELLED = 7,
    STACKLLAMA_ERROR_INTERNAL = 99,
    STACKLLAMA_ERROR_BUFFER_TOO_SMALL = 100 /* C ABI only: see the size-query convention */
} stackllama_status;

/* How a generation ended; values match stackllama::FinishReason. */
typedef enum stackllama_finish_reason {
    STACKLLAMA_FINISH_EOS = 0,         /* an end-of-sequence token */
    STACKLLAMA_FINISH_LENGTH = 1,      /* max_new_tokens, or the context is full */
    STACKLLAMA_FINISH_STOP_STRING = 2, /* a stop string */
    STACKLLAMA_FINISH_CANCELLED = 3    /* the callback returned false or _cancel was called */
} stackllama_finish_reason;

/* ------------------------------------------------------------------------------------------ */
/* Library                                                                                      */

/* The version of the library actually linked ("0.1.0"), which may differ from
 * STACKLLAMA_VERSION_STRING of the header the caller was compiled with. Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_version(void);
/* MAJOR * 10000 + MINOR * 100 + PATCH of the linked library (as STACKLLAMA_VERSION_NUMBER). Since 0.1. */
STACKLLAMA_CAPI uint32_t stackllama_version_number(void);
/* CPU features and the kernels in use, e.g. "cpu: avx2=1 fma=1 avx512f=0 ... | kernels: avx2".
 * Static string; never NULL. Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_system_info(void);
/* A static name for a status ("ok", "invalid argument", ...). Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_status_name(stackllama_status status);
/* A static name for a finish reason ("eos", "length", "stop_string", "cancelled"). Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_finish_reason_name(stackllama_finish_reason reason);
/* The message of the last call that failed on this thread ("" when none has). Valid until the
 * next failing call on the same thread; never NULL. Successful calls leave it unchanged. Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_last_error(void);

/* ------------------------------------------------------------------------------------------ */
/* Opaque handles                                                                               */

typedef struct stackllama_model stackllama_model;         /* immutable weights, shareable */
typedef struct stackllama_adapter stackllama_adapter;     /* a PEFT LoRA adapter of one model */
typedef struct stackllama_tokenizer stackllama_tokenizer; /* SentencePiece, shareable */
typedef struct stackllama_generator stackllama_generator; /* one sequence: KV cache, adapters */
typedef struct stackllama_result stackllama_result;       /* the outcome of one generation */
typedef struct stackllama_pool stackllama_pool;           /* worker threads, shareable */
/* stackllama_logprobs: see "Scoring and rewards". */

/* ------------------------------------------------------------------------------------------ */
/* Models                                                                                       */

typedef struct stackllama_model_params {
    uint32_t struct_size;     /* sizeof(stackllama_model_params) of the caller, set by _init */
    int32_t n_threads;        /* 0 = the physical cores the process may run on */
    int32_t load_tokenizer;   /* 1 (default): load the tokenizer when present; 0 = weights only */
    int32_t verbose;          /* 0 (default); 1 = load log on stderr */
    int32_t verify_checksums; /* 1 (default): native files check every tensor's hash at load */
    int32_t reserved0;        /* padding; must be 0 */
    /* Since 0.2. Convert the weight matrices at load: "q8" (8.5 bits per weight), "q4" (4.5
     * bits), "f16", "bf16" or "f32"; NULL (default) keeps the stored type. Matrices whose rows do
     * not fit q8/q4 (a multiple of 32) keep their stored type. Read only during the call. */
    const char *weight_type;
} stackllama_model_params;

/* Sets params->struct_size = struct_size and every field within it to its default. Pass
 * sizeof *params. STACKLLAMA_ERROR_INVALID_ARGUMENT for NULL, or for a struct_size that is not the
 * size of a version of the struct this library knows (e.g. from a newer header). The other
 * *_params_init functions work the same way. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_model_params_init(stackllama_model_params *params,
                                                               size_t struct_size);

/* Loads a Hugging Face LLaMA directory (config.json, model.safetensors or sharded, tokenizer.model)
 * or a native stackllama file. Weights stay memory-mapped. params may be NULL (defaults).
 * On success *out_model is a new handle: free with stackllama_model_free. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_model_load(const char *path,
                                                        const stackllama_model_params *params,
                                                        stackllama_model **out_model);
/* Releases the handle. Generators, adapters and tokenizers made from it keep the model alive.
 * NULL is fine. Since 0.1. */
STACKLLAMA_CAPI void stackllama_model_free(stackllama_model *model);

/* Properties of config.json; 0 (or NULL, false) for a NULL model. Since 0.1. */
STACKLLAMA_CAPI int32_t stackllama_model_n_vocab(const stackllama_model *model);
STACKLLAMA_CAPI int32_t stackllama_model_n_ctx_train(const stackllama_model *model); /* max_position_embeddings */
STACKLLAMA_CAPI int32_t stackllama_model_n_layers(const stackllama_model *model);
STACKLLAMA_CAPI int32_t stackllama_model_hidden_size(const stackllama_model *model);
STACKLLAMA_CAPI int32_t stackllama_model_n_threads(const stackllama_model *model);
/* Outputs of the score head of a LlamaForSequenceClassification (reward) model; 0 for a causal LM. */
STACKLLAMA_CAPI int32_t stackllama_model_n_labels(const stackllama_model *model);
/* The path it was loaded from (owned by the model). */
STACKLLAMA_CAPI const char *stackllama_model_path(const stackllama_model *model);
/* "f32", "f16" or "bf16": the stored type of the large matrices (static string). */
STACKLLAMA_CAPI const char *stackllama_model_weight_dtype(const stackllama_model *model);
STACKLLAMA_CAPI bool stackllama_model_has_tokenizer(const stackllama_model *model);

/* Writes the model as a Hugging Face directory (config.json, model.safetensors, tokenizer files),
 * e.g. after stackllama_model_merge_adapters. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_model_save_pretrained(const stackllama_model *model,
                                                                   const char *dir);

/* ------------------------------------------------------------------------------------------ */
/* Adapters (PEFT LoRA directories: adapter_config.json + adapter_model.safetensors or .bin)     */

/* Loads an adapter for `model` and checks every tensor's shape against it. On success
 * *out_adapter is a new handle: free with stackllama_adapter_free (after detaching it). The
 * adapter keeps the model alive. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_adapter_load(const stackllama_model *model,
                                                          const char *dir,
                                                          stackllama_adapter **out_adapter);
/* Releases the handle. Refused (STACKLLAMA_ERROR_INVALID_ARGUMENT, with a message saying how many
 * generators hold it) while the adapter is attached to a generator: detach it, or free the
 * generators, first. NULL is fine (returns STACKLLAMA_OK). Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_adapter_free(stackllama_adapter *adapter);
/* The directory it was loaded from (owned by the adapter); NULL for NULL. Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_adapter_path(const stackllama_adapter *adapter);
/* adapter_config.json's r and lora_alpha; 0 for NULL. Since 0.1. */
STACKLLAMA_CAPI int32_t stackllama_adapter_rank(const stackllama_adapter *adapter);
STACKLLAMA_CAPI float stackllama_adapter_alpha(const stackllama_adapter *adapter);
/* The number of generators the adapter is attached to now. Since 0.1. */
STACKLLAMA_CAPI size_t stackllama_adapter_n_attached(const stackllama_adapter *adapter);

/* A new model whose weights are base's with the adapters merged (W += scale * s * B A, in f32);
 * base is unchanged. scales may be NULL (all 1.0); otherwise it has n_adapters entries. Every
 * adapter must have been loaded for base. Free *out_model with stackllama_model_free. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_model_merge_adapters(
    const stackllama_model *base, const stackllama_adapter *const *adapters, const float *scales,
    size_t n_adapters, stackllama_model **out_model);

/* ------------------------------------------------------------------------------------------ */
/* Tokenizers                                                                                   */

/* Loads dir/tokenizer.model (and tokenizer_config.json when present). Free with
 * stackllama_tokenizer_free. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_tokenizer_load(const char *dir,
                                                            stackllama_tokenizer **out_tokenizer);
/* The model's own tokenizer, as a new handle that keeps the model alive: free with
 * stackllama_tokenizer_free. STACKLLAMA_ERROR_INVALID_ARGUMENT when the model has none. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_model_get_tokenizer(
    const stackllama_model *model, stackllama_tokenizer **out_tokenizer);
/* NULL is fine. Since 0.1. */
STACKLLAMA_CAPI void stackllama_tokenizer_free(stackllama_tokenizer *tokenizer);

/* Text to ids, with BOS/EOS as tokenizer_config.json says when add_special. Size-query
 * convention on ids / ids_capacity / *out_n_ids (counted in ids). Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_tokenizer_encode(const stackllama_tokenizer *tokenizer,
                                                              const char *text, bool add_special,
                                                              int32_t *ids, size_t ids_capacity,
                                                              size_t *out_n_ids);
/* Ids to text (control tokens skipped when skip_special). *out_len is the text's length in bytes
 * without the NUL; buf needs *out_len + 1 bytes. Size-query convention. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_tokenizer_decode(const stackllama_tokenizer *tokenizer,
                                                              const int32_t *ids, size_t n_ids,
                                                              bool skip_special, char *buf,
                                                              size_t buf_size, size_t *out_len);
/* The raw piece of one id ("\xe2\x96\x81the", "<0x0A>", "<s>"); as decode for sizes. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_tokenizer_id_to_piece(
    const stackllama_tokenizer *tokenizer, int32_t id, char *buf, size_t buf_size, size_t *out_len);
/* The id of a piece, or -1 when it is not in the vocabulary (or an argument is NULL). Since 0.1. */
STACKLLAMA_CAPI int32_t stackllama_tokenizer_piece_to_id(const stackllama_tokenizer *tokenizer,
                                                         const char *piece);
/* Vocabulary size and special ids (-1 when the model has none, or for NULL). Since 0.1. */
STACKLLAMA_CAPI int32_t stackllama_tokenizer_n_vocab(const stackllama_tokenizer *tokenizer);
STACKLLAMA_CAPI int32_t stackllama_tokenizer_bos_id(const stackllama_tokenizer *tokenizer);
STACKLLAMA_CAPI int32_t stackllama_tokenizer_eos_id(const stackllama_tokenizer *tokenizer);
STACKLLAMA_CAPI int32_t stackllama_tokenizer_unk_id(const stackllama_tokenizer *tokenizer);
STACKLLAMA_CAPI int32_t stackllama_tokenizer_pad_id(const stackllama_tokenizer *tokenizer);

/* ------------------------------------------------------------------------------------------ */
/* Generators: one sequence (KV cache) of one model, with adapters attached unmerged            */

/* Worker threads that generators may share (stackllama_generator_params.pool), so that several
 * generators running at once compute on n_threads threads in all instead of n_threads each. A job
 * of one generator (a matrix product, a layer's attention) uses every thread of the pool; jobs of
 * generators sharing it run one after another. The thread that calls into a generator works on
 * its jobs too, so a pool of n threads starts n - 1. n_threads: 0 = the physical cores the process
 * may run on, else 1 to 1024 (STACKLLAMA_ERROR_INVALID_ARGUMENT otherwise). Usable from any
 * number of threads at once. Free with stackllama_pool_free, whenever: generators using it keep
 * it alive. Since 0.2. */
STACKLLAMA_CAPI stackllama_status stackllama_pool_create(int32_t n_threads,
                                                         stackllama_pool **out_pool);
STACKLLAMA_CAPI void stackllama_pool_free(stackllama_pool *pool);
/* The pool's thread count (the caller's included); 0 for NULL. Since 0.2. */
STACKLLAMA_CAPI int32_t stackllama_pool_n_threads(const stackllama_pool *pool);

typedef struct stackllama_generator_params {
    uint32_t struct_size; /* sizeof(stackllama_generator_params) of the caller, set by _init */
    int32_t n_ctx;        /* context length in tokens; 0 (default) = max_position_embeddings */
    /* Since 0.2. Threads to compute on, shared with other generators; NULL (default) = the
     * generator's own, the model's n_threads. Read only during the call (the generator keeps
     * what it needs). */
    stackllama_pool *pool;
} stackllama_generator_params;

/* As stackllama_model_params_init. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_params_init(
    stackllama_generator_params *params, size_t struct_size);

/* Allocates the KV cache and buffers for `model` (kept alive by the generator). params may be
 * NULL. Free with stackllama_generator_free. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_create(
    const stackllama_model *model, const stackllama_generator_params *params,
    stackllama_generator **out_generator);
/* Detaches every adapter and releases the generator. NULL is fine. Since 0.1. */
STACKLLAMA_CAPI void stackllama_generator_free(stackllama_generator *generator);

/* The context length, and the number of tokens in the KV cache (0 for NULL). Since 0.1. */
STACKLLAMA_CAPI int32_t stackllama_generator_n_ctx(const stackllama_generator *generator);
STACKLLAMA_CAPI int32_t stackllama_generator_n_past(const stackllama_generator *generator);
/* The ids in the KV cache; size-query convention. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_tokens(const stackllama_generator *generator,
                                                              int32_t *ids, size_t ids_capacity,
                                                              size_t *out_n_ids);
/* Forgets the sequence (the KV cache stays allocated; adapters stay attached). Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_reset(stackllama_generator *generator);

/* KV sessions: writes the sequence (tokens, KV cache, pending token, last logits) to a
 * zstd-compressed file at `path`, and replaces a generator's sequence with a saved one, so that
 * generation continues exactly where it left off. Loading requires the same model and the same
 * attached adapters and scales (STACKLLAMA_ERROR_INVALID_ARGUMENT otherwise); a damaged file is
 * STACKLLAMA_ERROR_FORMAT and leaves the generator unchanged. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_save_session(
    const stackllama_generator *generator, const char *path);
STACKLLAMA_CAPI stackllama_status stackllama_generator_load_session(
    stackllama_generator *generator, const char *path);

/* Applies a LoRA adapter, unmerged, from the next evaluated token on, with `scale` times its own
 * scaling. The adapter must belong to the generator's model; attaching it twice is refused. Tokens
 * already in the cache are not recomputed: reset to start over. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_attach(stackllama_generator *generator,
                                                              stackllama_adapter *adapter,
                                                              float scale);
/* STACKLLAMA_ERROR_INVALID_ARGUMENT when the adapter is not attached to this generator. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_detach(stackllama_generator *generator,
                                                              stackllama_adapter *adapter);
STACKLLAMA_CAPI stackllama_status stackllama_generator_detach_all(stackllama_generator *generator);
/* How many adapters are attached (0 for NULL). Since 0.1. */
STACKLLAMA_CAPI size_t stackllama_generator_n_attached(const stackllama_generator *generator);

/* Appends ids to the sequence and runs them through the model in one pass. *out_logits points
 * at the logits of the last id (all_logits false; *out_n_rows = 1) or of every id appended
 * (*out_n_rows = n_ids), each row stackllama_model_n_vocab floats. They are owned by the
 * generator and valid until its next call that changes it. out_n_rows may be NULL. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_eval(stackllama_generator *generator,
                                                            const int32_t *ids, size_t n_ids,
                                                            bool all_logits,
                                                            const float **out_logits,
                                                            size_t *out_n_rows);

/* Named as transformers' GenerationConfig, with its defaults (presence_penalty,
 * frequency_penalty and logit_bias as in the OpenAI / vLLM APIs). Values are checked when a
 * generation starts: one out of range is STACKLLAMA_ERROR_INVALID_ARGUMENT naming the field.
 * Arrays are read during the call only. */
typedef struct stackllama_generation_params {
    uint32_t struct_size;         /* sizeof(stackllama_generation_params) of the caller */
    int32_t max_new_tokens;       /* 128; >= 0 */
    int32_t do_sample;            /* 0 (default) = greedy; 1 = sample with the fields below */
    float temperature;            /* 1.0; >= 0 (with do_sample, 0 = greedy) */
    int32_t top_k;                /* 50; 0 = off */
    float top_p;                  /* 1.0 = off; (0, 1] */
    float min_p;                  /* 0 = off; [0, 1] */
    float typical_p;              /* 1.0 = off; (0, 1] */
    float repetition_penalty;     /* 1.0 = off; > 0; over prompt and output tokens */
    float presence_penalty;       /* 0 = off; subtracted once from each token in the output */
    float frequency_penalty;      /* 0 = off; subtracted per occurrence in the output */
    int32_t no_repeat_ngram_size; /* 0 = off */
    int32_t has_seed;             /* 0 (default): a random seed per call (see _result_seed) */
    int32_t num_return_sequences; /* 1; sequences per prompt (generate_batch, best_of_n) */
    uint64_t seed;                /* used when has_seed; sequence j samples with seed + j */
    const int32_t *eos_token_ids; /* NULL (default): none besides the model's */
    size_t n_eos_token_ids;       /* 0 */
    int32_t use_model_eos;        /* 1 (default): the model's EOS ids end generation too */
    int32_t reserved0;            /* padding; must be 0 */
    const char *const *stop_strings;  /* NULL (default); n_stop_strings UTF-8 strings that end
                                         generation (neither they nor what follows is returned) */
    size_t n_stop_strings;            /* 0 */
    const int32_t *logit_bias_tokens; /* NULL (default); n_logit_bias token ids ... */
    const float *logit_bias_values;   /* ... and the bias added to each one's logit (-INFINITY bans) */
    size_t n_logit_bias;              /* 0 */
} stackllama_generation_params;

/* As stackllama_model_params_init. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generation_params_init(
    stackllama_generation_params *params, size_t struct_size);

/* Called with each new token and the text that became final with it (UTF-8, piece_len bytes,
 * NUL-terminated, possibly empty: text that may start a stop string is held back; valid during the
 * call only). Text still held at the end arrives in one last call with token -1; the pieces put
 * together are exactly the result's text. Return true to go on, false to stop (finish reason
 * CANCELLED). Must not call functions on the same generator. */
typedef bool (*stackllama_token_callback)(const char *piece, size_t piece_len, int32_t token,
                                          void *user_data);
/* The same for several sequences: `sequence` is the index into the results. Returning false
 * cancels that sequence only. */
typedef bool (*stackllama_batch_token_callback)(size_t sequence, const char *piece,
                                                size_t piece_len, int32_t token, void *user_data);

/* Encodes `prompt` with the model's tokenizer (BOS per tokenizer_config.json when the sequence is
 * empty), appends it to the sequence and generates (num_return_sequences must be 1). A generator
 * continues its sequence from one call to the next: call stackllama_generator_reset to start
 * over. on_token and out_result may be NULL; otherwise *out_result is a new handle: free with
 * stackllama_result_free. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_generate(
    stackllama_generator *generator, const char *prompt,
    const stackllama_generation_params *params, stackllama_token_callback on_token,
    void *user_data, stackllama_result **out_result);
/* Same with the prompt given as ids (n_prompt may be 0 to continue a non-empty sequence).
 * Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_generate_tokens(
    stackllama_generator *generator, const int32_t *prompt, size_t n_prompt,
    const stackllama_generation_params *params, stackllama_token_callback on_token,
    void *user_data, stackllama_result **out_result);
/* num_return_sequences sequences for each of n_prompts prompts, decoded together (one forward
 * pass per step for all); sequence j of prompt p is result p * num_return_sequences + j and
 * samples with seed + j, giving the same tokens as generate() on that prompt alone with that
 * seed. Starts from, and leaves, an empty sequence. Size-query convention on out_results /
 * capacity / *out_n_results (counted in results; a query runs nothing); each result is a new
 * handle: free each with stackllama_result_free. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_generate_batch(
    stackllama_generator *generator, const char *const *prompts, size_t n_prompts,
    const stackllama_generation_params *params, stackllama_batch_token_callback on_token,
    void *user_data, stackllama_result **out_results, size_t capacity, size_t *out_n_results);
/* Asks the generation running on this generator to stop after its current token (finish reason
 * CANCELLED). Safe to call from any thread, and from the callback; does nothing when no
 * generation runs. Since 0.1. */
STACKLLAMA_CAPI void stackllama_generator_cancel(stackllama_generator *generator);

/* ------------------------------------------------------------------------------------------ */
/* Scoring and rewards (each starts from, and leaves, an empty sequence)                        */

typedef struct stackllama_logprobs stackllama_logprobs; /* log-probabilities of scored tokens */

/* log p(continuation | prompt), per token and summed (natural log). The continuation's tokens are
 * those of encode(prompt + continuation) past encode(prompt)'s. *out_logprobs is a new handle:
 * free with stackllama_logprobs_free. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_log_likelihood(
    stackllama_generator *generator, const char *prompt, const char *continuation,
    stackllama_logprobs **out_logprobs);
/* Same with ids (n_prompt >= 1). Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_log_likelihood_tokens(
    stackllama_generator *generator, const int32_t *prompt, size_t n_prompt,
    const int32_t *continuation, size_t n_continuation, stackllama_logprobs **out_logprobs);
/* NULL is fine. Since 0.1. */
STACKLLAMA_CAPI void stackllama_logprobs_free(stackllama_logprobs *logprobs);
/* The scored tokens, their log-probabilities (owned by the handle) and the sum (in double);
 * 0 / NULL for NULL. Since 0.1. */
STACKLLAMA_CAPI size_t stackllama_logprobs_n_tokens(const stackllama_logprobs *logprobs);
STACKLLAMA_CAPI const int32_t *stackllama_logprobs_tokens(const stackllama_logprobs *logprobs);
STACKLLAMA_CAPI const float *stackllama_logprobs_values(const stackllama_logprobs *logprobs);
STACKLLAMA_CAPI double stackllama_logprobs_sum(const stackllama_logprobs *logprobs);

/* exp(-mean log p(token | tokens before)) of encode(text) (BOS as the tokenizer says), or of ids
 * (at least two). Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_perplexity(stackllama_generator *generator,
                                                                  const char *text,
                                                                  double *out_perplexity);
STACKLLAMA_CAPI stackllama_status stackllama_generator_perplexity_tokens(
    stackllama_generator *generator, const int32_t *ids, size_t n_ids, double *out_perplexity);

/* The reward model's score head on the last token of encode(text): num_labels values into
 * values[capacity]; size-query convention on values / capacity / *out_n_values (counted in
 * floats). The head is score.weight of a LlamaForSequenceClassification model or the `score`
 * module of an attached adapter; STACKLLAMA_ERROR_UNSUPPORTED when there is none. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_reward(stackllama_generator *generator,
                                                              const char *text, float *values,
                                                              size_t capacity,
                                                              size_t *out_n_values);
STACKLLAMA_CAPI stackllama_status stackllama_generator_reward_tokens(
    stackllama_generator *generator, const int32_t *ids, size_t n_ids, float *values,
    size_t capacity, size_t *out_n_values);
/* Rewards of n_texts texts run through the model together, row-major into values (n_texts rows of
 * *out_n_labels floats); size-query convention on values / capacity (in floats) with
 * *out_n_labels set either way. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_reward_batch(
    stackllama_generator *generator, const char *const *texts, size_t n_texts, float *values,
    size_t capacity, size_t *out_n_labels);

/* Best-of-n: num_return_sequences answers to `prompt` from `policy` (as generate_batch), each
 * scored (prompt + answer) by `reward_model`, best first by reward[0] (ties keep generation
 * order). The results carry their rewards (stackllama_result_reward) and generation index.
 * Output as generate_batch: size-query convention, each result freed with stackllama_result_free.
 * The two generators may share one model. Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_best_of_n(
    stackllama_generator *policy, stackllama_generator *reward_model, const char *prompt,
    const stackllama_generation_params *params, stackllama_result **out_results, size_t capacity,
    size_t *out_n_results);
/* The same on one generator over one copy of the weights: attaches the policy adapters to
 * generate and the reward adapters (e.g. a LoRA with `score` saved) to score, then restores the
 * adapters attached before. scales may be NULL (all 1.0). Since 0.1. */
STACKLLAMA_CAPI stackllama_status stackllama_generator_best_of_n_adapters(
    stackllama_generator *generator, const stackllama_adapter *const *policy_adapters,
    const float *policy_scales, size_t n_policy, const stackllama_adapter *const *reward_adapters,
    const float *reward_scales, size_t n_reward, const char *prompt,
    const stackllama_generation_params *params, stackllama_result **out_results, size_t capacity,
    size_t *out_n_results);

/* ------------------------------------------------------------------------------------------ */
/* Results                                                                                      */

/* NULL is fine. Since 0.1. */
STACKLLAMA_CAPI void stackllama_result_free(stackllama_result *result);
/* The generated text (EOS excluded), owned by the result; "" for NULL. Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_result_text(const stackllama_result *result);
STACKLLAMA_CAPI size_t stackllama_result_text_len(const stackllama_result *result);
/* The new ids (the EOS that stopped generation included), owned by the result. Since 0.1. */
STACKLLAMA_CAPI const int32_t *stackllama_result_tokens(const stackllama_result *result);
STACKLLAMA_CAPI size_t stackllama_result_n_tokens(const stackllama_result *result);
/* STACKLLAMA_FINISH_LENGTH for NULL. Since 0.1. */
STACKLLAMA_CAPI stackllama_finish_reason stackllama_result_finish_reason(
    const stackllama_result *result);
/* log p(token) of each new token under the model's own distribution (before any sampling
 * processor), stackllama_result_n_tokens of them, owned by the result. Since 0.1. */
STACKLLAMA_CAPI const float *stackllama_result_logprobs(const stackllama_result *result);
/* The seed this sequence sampled with (the random one drawn when has_seed was 0). Since 0.1. */
STACKLLAMA_CAPI uint64_t stackllama_result_seed(const stackllama_result *result);
/* The stop string that ended it (finish reason STOP_STRING), else "". Since 0.1. */
STACKLLAMA_CAPI const char *stackllama_result_stop_string(const stackllama_result *result);
/* best_of_n only: the reward model's outputs for this answer (NULL and 0 otherwise) and the
 * answer's place in generation order (it sampled with seed + index). Since 0.1. */
STACKLLAMA_CAPI const float *stackllama_result_reward(const stackllama_result *result,
                                                      size_t *out_n_values);
STACKLLAMA_CAPI size_t stackllama_result_index(const stackllama_result *result);

#ifdef __cplusplus
}
#endif

#endif /* STACKLLAMA_H */
