/* The C ABI from C: compiled as C99 (-std=c99 -pedantic -Werror), so a C++-ism in stackllama.h
 * fails the build. Exercises every function of the header, the misuse rules (NULL handles and
 * out-pointers, older and newer params structs, buffers too small, freeing an attached adapter)
 * and checks tokens and logits against what the C++ API computed (tests/capi_reference.cpp).
 *
 *   capi_test_c MODEL_DIR FIXTURE_DIR REFERENCE_DIR SCRATCH_DIR
 *
 * FIXTURE_DIR holds adapter/ and rm_adapter/ (tests/capi_fixture.py).
 */
#include <stackllama/stackllama.h>

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The settings of tests/capi_reference.cpp. */
#define N_THREADS 2
#define MAX_NEW_TOKENS 32
#define ADAPTER_SCALE 0.75f

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        ++g_checks;                                                                 \
        if (!(cond)) {                                                              \
            ++g_failures;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, stackllama_last_error());                      \
        }                                                                           \
    } while (0)

/* A failing call: the status, and a message that is set and new. */
#define CHECK_FAILS(call, expected)                                          \
    do {                                                                     \
        stackllama_status st_;                                               \
        reset_error();                                                       \
        st_ = (call);                                                        \
        CHECK(st_ == (expected));                                            \
        CHECK(strcmp(stackllama_last_error(), "<none>") != 0);               \
        CHECK(strlen(stackllama_last_error()) > 10);                         \
    } while (0)

#define CHECK_OK(call) CHECK((call) == STACKLLAMA_OK)

/* Makes the thread's last error a known value, so a test can see that a failure replaced it. */
static void reset_error(void) {
    stackllama_model *m = NULL;
    stackllama_model_load("/nonexistent/<none>", NULL, &m);
}

static char *read_file(const char *dir, const char *name, size_t *out_size) {
    char path[4096];
    FILE *f;
    char *buf;
    long n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (char *)malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    buf[n] = '\0';
    fclose(f);
    if (out_size) *out_size = (size_t)n;
    return buf;
}

/* Space-separated ids; returns how many (at most cap). */
static size_t read_ids(const char *dir, const char *name, int32_t *ids, size_t cap) {
    char *text = read_file(dir, name, NULL);
    char *p = text, *end;
    size_t n = 0;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p || n == cap) break;
        ids[n++] = (int32_t)v;
        p = end;
    }
    free(text);
    return n;
}

/* --- streaming callbacks --- */

typedef struct {
    char text[4096];
    size_t len;
    int32_t tokens[256];
    size_t n_tokens;
    size_t stop_after;                  /* return false after this many tokens (0 = never) */
    stackllama_generator *cancel_this;  /* or call stackllama_generator_cancel on it */
} stream_state;

static bool collect(const char *piece, size_t piece_len, int32_t token, void *user_data) {
    stream_state *s = (stream_state *)user_data;
    if (piece[piece_len] != '\0') return false; /* pieces are NUL-terminated */
    if (s->len + piece_len < sizeof s->text) {
        memcpy(s->text + s->len, piece, piece_len);
        s->len += piece_len;
        s->text[s->len] = '\0';
    }
    if (token >= 0 && s->n_tokens < 256) s->tokens[s->n_tokens++] = token;
    if (s->cancel_this && s->n_tokens == s->stop_after) stackllama_generator_cancel(s->cancel_this);
    return s->cancel_this || s->stop_after == 0 || s->n_tokens < s->stop_after;
}

static void init_stream(stream_state *s) { memset(s, 0, sizeof *s); }

/* --- checks against the reference --- */

static void check_tokens(const stackllama_result *r, const char *ref, const char *name) {
    int32_t expected[256];
    char file[64];
    size_t n, i, n_text;
    char *text;
    snprintf(file, sizeof file, "%s.tokens", name);
    n = read_ids(ref, file, expected, 256);
    CHECK(stackllama_result_n_tokens(r) == n);
    for (i = 0; i < n && i < stackllama_result_n_tokens(r); ++i)
        CHECK(stackllama_result_tokens(r)[i] == expected[i]);
    snprintf(file, sizeof file, "%s.text", name);
    text = read_file(ref, file, &n_text);
    CHECK(stackllama_result_text_len(r) == n_text);
    CHECK(memcmp(stackllama_result_text(r), text, n_text) == 0);
    free(text);
}

static void check_logits(const float *logits, size_t n_rows, size_t n_vocab, const char *ref,
                         const char *name) {
    char file[64];
    size_t size, i, n;
    float *expected;
    float max_diff = 0.0f;
    snprintf(file, sizeof file, "%s.logits.f32", name);
    expected = (float *)read_file(ref, file, &size);
    n = n_rows * n_vocab;
    CHECK(size == n * sizeof(float));
    for (i = 0; i < n && i * sizeof(float) < size; ++i) {
        float d = (float)fabs(logits[i] - expected[i]);
        if (d > max_diff) max_diff = d;
    }
    if (max_diff != 0.0f) fprintf(stderr, "%s logits: max |diff| %g\n", name, max_diff);
    CHECK(max_diff == 0.0f); /* the same library and threads: bit for bit */
    free(expected);
}

static stackllama_result *generate_prompt(stackllama_generator *gen, const char *prompt,
                                          stream_state *s) {
    stackllama_generation_params gp;
    stackllama_result *r = NULL;
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = MAX_NEW_TOKENS;
    CHECK_OK(stackllama_generator_reset(gen));
    CHECK_OK(stackllama_generator_generate(gen, prompt, &gp, s ? collect : NULL, s, &r));
    CHECK(r != NULL);
    return r;
}

/* Greedy generation from the prompt on a reset generator gives the reference case `name`. */
static void check_generation(stackllama_generator *gen, const char *prompt, const char *ref,
                             const char *name) {
    stackllama_result *r = generate_prompt(gen, prompt, NULL);
    check_tokens(r, ref, name);
    stackllama_result_free(r);
}

/* ---------------------------------------------------------------------------------------- */

static void test_version(void) {
    char v[64];
    snprintf(v, sizeof v, "%d.%d.%d", STACKLLAMA_VERSION_MAJOR, STACKLLAMA_VERSION_MINOR,
             STACKLLAMA_VERSION_PATCH);
    CHECK(strcmp(stackllama_version(), v) == 0);
    CHECK(strcmp(stackllama_version(), STACKLLAMA_VERSION_STRING) == 0);
    CHECK(strstr(stackllama_system_info(), "kernels: ") != NULL);
    CHECK(strstr(stackllama_system_info(), "cpu:") != NULL);
    CHECK(stackllama_version_number() == STACKLLAMA_VERSION_NUMBER);
#if STACKLLAMA_VERSION_NUMBER < 100
    CHECK(0 && "STACKLLAMA_VERSION_NUMBER usable in #if");
#endif
    CHECK(strcmp(stackllama_status_name(STACKLLAMA_OK), "ok") == 0);
    CHECK(strcmp(stackllama_status_name(STACKLLAMA_ERROR_IO), "I/O error") == 0);
    CHECK(strcmp(stackllama_status_name(STACKLLAMA_ERROR_BUFFER_TOO_SMALL), "buffer too small") == 0);
    CHECK(strcmp(stackllama_status_name((stackllama_status)12345), "unknown status") == 0);
    CHECK(strcmp(stackllama_finish_reason_name(STACKLLAMA_FINISH_EOS), "eos") == 0);
    CHECK(strcmp(stackllama_finish_reason_name(STACKLLAMA_FINISH_CANCELLED), "cancelled") == 0);
    CHECK(strcmp(stackllama_finish_reason_name((stackllama_finish_reason)77), "unknown finish reason") == 0);
    /* Pinned values. */
    CHECK(STACKLLAMA_OK == 0 && STACKLLAMA_ERROR_INVALID_ARGUMENT == 1 && STACKLLAMA_ERROR_IO == 2 &&
          STACKLLAMA_ERROR_FORMAT == 3 && STACKLLAMA_ERROR_UNSUPPORTED == 4 &&
          STACKLLAMA_ERROR_OUT_OF_RANGE == 5 && STACKLLAMA_ERROR_OUT_OF_MEMORY == 6 &&
          STACKLLAMA_ERROR_CANCELLED == 7 && STACKLLAMA_ERROR_INTERNAL == 99 &&
          STACKLLAMA_ERROR_BUFFER_TOO_SMALL == 100);
}

static void test_null_arguments(const char *model_dir) {
    stackllama_model *m = NULL;
    stackllama_generator *g = NULL;
    stackllama_tokenizer *t = NULL;
    stackllama_adapter *a = NULL;
    size_t n = 0;
    const float *logits = NULL;
    int32_t id = 1;
    char buf[8];

    CHECK_FAILS(stackllama_model_load(NULL, NULL, &m), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "path is NULL") != NULL);
    CHECK_FAILS(stackllama_model_load(model_dir, NULL, NULL), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "out_model") != NULL);
    CHECK(m == NULL);
    CHECK_FAILS(stackllama_model_save_pretrained(NULL, "/tmp"), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_adapter_load(NULL, "/tmp", &a), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_model_merge_adapters(NULL, NULL, NULL, 0, &m),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_tokenizer_load(NULL, &t), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_model_get_tokenizer(NULL, &t), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_tokenizer_encode(NULL, "x", true, NULL, 0, &n),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_tokenizer_decode(NULL, &id, 1, true, buf, sizeof buf, &n),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_tokenizer_id_to_piece(NULL, 1, buf, sizeof buf, &n),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_create(NULL, NULL, &g), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_tokens(NULL, NULL, 0, &n), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_reset(NULL), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_attach(NULL, NULL, 1.0f), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_detach(NULL, NULL), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_detach_all(NULL), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_eval(NULL, &id, 1, false, &logits, &n),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_generate(NULL, "x", NULL, NULL, NULL, NULL),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_generate_tokens(NULL, &id, 1, NULL, NULL, NULL, NULL),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(g == NULL && t == NULL && a == NULL && logits == NULL);

    /* Getters and frees accept NULL. */
    CHECK(stackllama_model_n_vocab(NULL) == 0);
    CHECK(stackllama_model_n_ctx_train(NULL) == 0);
    CHECK(stackllama_model_n_layers(NULL) == 0);
    CHECK(stackllama_model_hidden_size(NULL) == 0);
    CHECK(stackllama_model_n_threads(NULL) == 0);
    CHECK(stackllama_model_n_labels(NULL) == 0);
    CHECK(stackllama_model_path(NULL) == NULL);
    CHECK(stackllama_model_weight_dtype(NULL) == NULL);
    CHECK(!stackllama_model_has_tokenizer(NULL));
    CHECK(stackllama_adapter_path(NULL) == NULL);
    CHECK(stackllama_adapter_rank(NULL) == 0);
    CHECK(stackllama_adapter_alpha(NULL) == 0.0f);
    CHECK(stackllama_adapter_n_attached(NULL) == 0);
    CHECK(stackllama_tokenizer_piece_to_id(NULL, "a") == -1);
    CHECK(stackllama_tokenizer_n_vocab(NULL) == 0);
    CHECK(stackllama_tokenizer_bos_id(NULL) == -1);
    CHECK(stackllama_tokenizer_eos_id(NULL) == -1);
    CHECK(stackllama_tokenizer_unk_id(NULL) == -1);
    CHECK(stackllama_tokenizer_pad_id(NULL) == -1);
    CHECK(stackllama_generator_n_ctx(NULL) == 0);
    CHECK(stackllama_generator_n_past(NULL) == 0);
    CHECK(stackllama_generator_n_attached(NULL) == 0);
    CHECK(strcmp(stackllama_result_text(NULL), "") == 0);
    CHECK(stackllama_result_text_len(NULL) == 0);
    CHECK(stackllama_result_tokens(NULL) == NULL);
    CHECK(stackllama_result_n_tokens(NULL) == 0);
    CHECK(stackllama_result_finish_reason(NULL) == STACKLLAMA_FINISH_LENGTH);
    stackllama_generator_cancel(NULL);
    CHECK_FAILS(stackllama_model_params_init(NULL, sizeof(stackllama_model_params)),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generator_params_init(NULL, sizeof(stackllama_generator_params)),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_generation_params_init(NULL, sizeof(stackllama_generation_params)),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    stackllama_model_free(NULL);
    stackllama_tokenizer_free(NULL);
    stackllama_generator_free(NULL);
    stackllama_result_free(NULL);
    CHECK_OK(stackllama_adapter_free(NULL));
}

/* What a caller built against an older header would pass: the first fields only. */
typedef struct {
    uint32_t struct_size;
    int32_t max_new_tokens;
    int32_t do_sample;
    float temperature;
} old_generation_params;

typedef struct {
    stackllama_generation_params current;
    int32_t field_from_the_future;
    int32_t another;
} new_generation_params;

static void test_params(const char *model_dir, const char *ref, stackllama_generator *gen) {
    stackllama_model_params mp;
    stackllama_generation_params gp;
    old_generation_params old;
    new_generation_params newer;
    stackllama_model *m = NULL;
    stackllama_result *r = NULL;
    char *prompt = read_file(ref, "prompt.txt", NULL);

    stackllama_model_params_init(&mp, sizeof mp);
    CHECK(mp.struct_size == sizeof mp);
    CHECK(mp.n_threads == 0 && mp.load_tokenizer == 1 && mp.verbose == 0 && mp.reserved0 == 0);
    stackllama_generation_params_init(&gp, sizeof gp);
    CHECK(gp.struct_size == sizeof gp);
    CHECK(gp.max_new_tokens == 128 && gp.use_model_eos == 1 && gp.do_sample == 0);
    CHECK(gp.temperature == 1.0f && gp.eos_token_ids == NULL && gp.n_eos_token_ids == 0);
    CHECK(gp.top_k == 50 && gp.top_p == 1.0f && gp.min_p == 0.0f && gp.typical_p == 1.0f);
    CHECK(gp.repetition_penalty == 1.0f && gp.presence_penalty == 0.0f &&
          gp.frequency_penalty == 0.0f && gp.no_repeat_ngram_size == 0);
    CHECK(gp.has_seed == 0 && gp.num_return_sequences == 1 && gp.stop_strings == NULL &&
          gp.n_stop_strings == 0 && gp.logit_bias_tokens == NULL && gp.n_logit_bias == 0);

    /* An older caller: a smaller struct. _init writes only that much; the library's defaults
     * fill the rest when it is used. */
    CHECK(sizeof old == offsetof(stackllama_generation_params, top_k));
    {
        struct {
            old_generation_params old;
            unsigned char canary[32];
        } o;
        size_t i;
        memset(&o, 0xAB, sizeof o);
        CHECK_OK(stackllama_generation_params_init((stackllama_generation_params *)&o.old,
                                                   sizeof o.old));
        CHECK(o.old.struct_size == sizeof o.old && o.old.max_new_tokens == 128);
        CHECK(o.old.do_sample == 0 && o.old.temperature == 1.0f);
        for (i = 0; i < sizeof o.canary; ++i) CHECK(o.canary[i] == 0xAB);
        old = o.old;
    }
    old.max_new_tokens = MAX_NEW_TOKENS;
    CHECK_OK(stackllama_generator_reset(gen));
    CHECK_OK(stackllama_generator_generate(gen, prompt, (const stackllama_generation_params *)&old,
                                           NULL, NULL, &r));
    check_tokens(r, ref, "base"); /* the fields it lacks took their defaults */
    stackllama_result_free(r);
    r = NULL;

    /* Only struct_size: every field defaulted. */
    mp.struct_size = sizeof(uint32_t);
    mp.n_threads = -12345; /* beyond struct_size: never read */
    CHECK_OK(stackllama_model_load(model_dir, &mp, &m));
    CHECK(stackllama_model_n_threads(m) > 0);
    stackllama_model_free(m);
    m = NULL;

    /* A newer caller: refused, saying why, by _init and by the call. */
    CHECK_FAILS(stackllama_generation_params_init(&newer.current, sizeof newer),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "newer") != NULL);
    CHECK_FAILS(stackllama_generation_params_init(&newer.current, 6),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    stackllama_generation_params_init(&newer.current, sizeof newer.current);
    newer.current.struct_size = sizeof newer;
    CHECK_FAILS(stackllama_generator_generate(gen, prompt, &newer.current, NULL, NULL, &r),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "newer") != NULL);
    CHECK(r == NULL);
    /* A size that ends inside a field, or 0 (not initialised). */
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.struct_size = 6;
    CHECK_FAILS(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    gp.struct_size = 0;
    CHECK_FAILS(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "_init") != NULL);
    /* Reserved fields must be 0. */
    stackllama_model_params_init(&mp, sizeof mp);
    mp.reserved0 = 1;
    CHECK_FAILS(stackllama_model_load(model_dir, &mp, &m), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(m == NULL);
    /* weight_type (since 0.2): quantized at load; an unknown name is refused, naming the field;
     * a caller of 0.1 (struct without the field) keeps the stored type. */
    stackllama_model_params_init(&mp, sizeof mp);
    CHECK(mp.weight_type == NULL);
    mp.weight_type = "q8";
    CHECK_OK(stackllama_model_load(model_dir, &mp, &m));
    CHECK(m != NULL && strcmp(stackllama_model_weight_dtype(m), "q8") == 0);
    stackllama_model_free(m);
    m = NULL;
    mp.weight_type = "q5";
    CHECK_FAILS(stackllama_model_load(model_dir, &mp, &m), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "weight_type") != NULL);
    CHECK(m == NULL);
    mp.weight_type = "q4";
    mp.struct_size = (uint32_t)offsetof(stackllama_model_params, weight_type);
    CHECK_OK(stackllama_model_load(model_dir, &mp, &m));
    CHECK(m != NULL && strcmp(stackllama_model_weight_dtype(m), "f32") == 0);
    stackllama_model_free(m);
    m = NULL;
    /* eos ids: NULL with a count is refused; given ids end generation. */
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.n_eos_token_ids = 2;
    CHECK_FAILS(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    {
        int32_t expected[256];
        size_t n = read_ids(ref, "base.tokens", expected, 256);
        int32_t stop = expected[3];
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.max_new_tokens = MAX_NEW_TOKENS;
        gp.eos_token_ids = &stop;
        gp.n_eos_token_ids = 1;
        CHECK(n > 4);
        CHECK_OK(stackllama_generator_reset(gen));
        CHECK_OK(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r));
        CHECK(stackllama_result_finish_reason(r) == STACKLLAMA_FINISH_EOS);
        CHECK(stackllama_result_n_tokens(r) <= 4);
        CHECK(stackllama_result_tokens(r)[stackllama_result_n_tokens(r) - 1] == stop);
        stackllama_result_free(r);
        r = NULL;
    }
    /* Sampling with a seed: the C++ API's tokens, and the same again with the same seed. */
    {
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.max_new_tokens = MAX_NEW_TOKENS;
        gp.do_sample = 1;
        gp.temperature = 0.9f;
        gp.top_k = 100;
        gp.top_p = 0.95f;
        gp.has_seed = 1;
        gp.seed = 42;
        CHECK_OK(stackllama_generator_reset(gen));
        CHECK_OK(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r));
        check_tokens(r, ref, "sampled");
        CHECK(stackllama_result_seed(r) == 42);
        stackllama_result_free(r);
        r = NULL;
        /* Without a seed: one is drawn and reported. */
        gp.has_seed = 0;
        CHECK_OK(stackllama_generator_reset(gen));
        CHECK_OK(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r));
        {
            uint64_t drawn = stackllama_result_seed(r);
            int32_t first[64];
            size_t n = stackllama_result_n_tokens(r), i;
            memcpy(first, stackllama_result_tokens(r), n * sizeof *first);
            stackllama_result_free(r);
            r = NULL;
            gp.has_seed = 1;
            gp.seed = drawn;
            CHECK_OK(stackllama_generator_reset(gen));
            CHECK_OK(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r));
            CHECK(stackllama_result_n_tokens(r) == n);
            for (i = 0; i < n && i < stackllama_result_n_tokens(r); ++i)
                CHECK(stackllama_result_tokens(r)[i] == first[i]);
            stackllama_result_free(r);
            r = NULL;
        }
        /* Values out of range name the field. */
        gp.top_p = 0.0f;
        CHECK_FAILS(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r),
                    STACKLLAMA_ERROR_INVALID_ARGUMENT);
        CHECK(strstr(stackllama_last_error(), "top_p") != NULL);
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.num_return_sequences = 2;
        CHECK_FAILS(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r),
                    STACKLLAMA_ERROR_INVALID_ARGUMENT);
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.n_stop_strings = 1;
        CHECK_FAILS(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r),
                    STACKLLAMA_ERROR_INVALID_ARGUMENT);
        CHECK(strstr(stackllama_last_error(), "stop_strings") != NULL);
    }
    /* Stop strings and logit bias reach C++. */
    {
        char *base_text = read_file(ref, "base.text", NULL);
        int32_t expected[256];
        size_t n_expected = read_ids(ref, "base.tokens", expected, 256);
        char stop[8];
        const char *stops[1];
        int32_t banned = expected[0];
        float minus_inf = -INFINITY;
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.max_new_tokens = MAX_NEW_TOKENS;
        /* A stop string from the middle of the greedy text. */
        memset(stop, 0, sizeof stop);
        memcpy(stop, base_text + strlen(base_text) / 2, 3);
        stops[0] = stop;
        gp.stop_strings = stops;
        gp.n_stop_strings = 1;
        CHECK_OK(stackllama_generator_reset(gen));
        CHECK_OK(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r));
        if (strlen(stop) == 3 && strstr(base_text, stop) != NULL) {
            CHECK(stackllama_result_finish_reason(r) == STACKLLAMA_FINISH_STOP_STRING);
            CHECK(strcmp(stackllama_result_stop_string(r), stop) == 0);
            CHECK(strstr(stackllama_result_text(r), stop) == NULL);
        }
        stackllama_result_free(r);
        r = NULL;
        /* Banning the first greedy token changes the first token. */
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.max_new_tokens = 2;
        gp.logit_bias_tokens = &banned;
        gp.logit_bias_values = &minus_inf;
        gp.n_logit_bias = 1;
        CHECK_OK(stackllama_generator_reset(gen));
        CHECK_OK(stackllama_generator_generate(gen, prompt, &gp, NULL, NULL, &r));
        CHECK(n_expected > 0 && stackllama_result_tokens(r)[0] != banned);
        stackllama_result_free(r);
        r = NULL;
        free(base_text);
    }
    free(prompt);
}

static void test_tokenizer(const stackllama_model *model, const char *model_dir, const char *ref) {
    stackllama_tokenizer *tok = NULL, *tok2 = NULL;
    int32_t expected[512], ids[512], small[2];
    size_t n_expected = read_ids(ref, "prompt.ids", expected, 512);
    size_t n = 0, i, len = 0;
    char *prompt = read_file(ref, "prompt.txt", NULL);
    char buf[1024], tiny[4];

    CHECK_OK(stackllama_model_get_tokenizer(model, &tok));
    CHECK(stackllama_tokenizer_n_vocab(tok) == stackllama_model_n_vocab(model));
    CHECK(stackllama_tokenizer_bos_id(tok) == 1 && stackllama_tokenizer_eos_id(tok) == 2);
    CHECK(stackllama_tokenizer_unk_id(tok) == 0);
    CHECK(stackllama_tokenizer_pad_id(tok) == -1);

    /* The size query, a buffer too small, then the ids. */
    CHECK_OK(stackllama_tokenizer_encode(tok, prompt, true, NULL, 0, &n));
    CHECK(n == n_expected);
    n = 0;
    CHECK_FAILS(stackllama_tokenizer_encode(tok, prompt, true, small, 2, &n),
                STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
    CHECK(n == n_expected);
    CHECK_FAILS(stackllama_tokenizer_encode(tok, prompt, true, NULL, 5, &n),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_tokenizer_encode(tok, prompt, true, ids, 512, NULL),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_OK(stackllama_tokenizer_encode(tok, prompt, true, ids, 512, &n));
    CHECK(n == n_expected);
    for (i = 0; i < n && i < n_expected; ++i) CHECK(ids[i] == expected[i]);
    CHECK(ids[0] == 1); /* BOS */
    CHECK_OK(stackllama_tokenizer_encode(tok, prompt, false, ids, 512, &n));
    CHECK(n == n_expected - 1);
    CHECK_FAILS(stackllama_tokenizer_encode(tok, "\xff\xfe", true, ids, 512, &n),
                STACKLLAMA_ERROR_INVALID_ARGUMENT); /* invalid UTF-8 */

    /* decode: query, too small (nothing written, size still given), exact fit with NUL. (The
     * default model's tokenizer normalises newlines to spaces, so round trip a line.) */
    {
        const char *line = "How do I sort a dict?";
        int32_t line_ids[64];
        size_t n_line = 0;
        CHECK_OK(stackllama_tokenizer_encode(tok, line, true, line_ids, 64, &n_line));
        CHECK_OK(stackllama_tokenizer_decode(tok, line_ids, n_line, true, NULL, 0, &len));
        CHECK(len == strlen(line));
        memset(tiny, 'x', sizeof tiny);
        len = 0;
        CHECK_FAILS(stackllama_tokenizer_decode(tok, line_ids, n_line, true, tiny, sizeof tiny, &len),
                    STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
        CHECK(len == strlen(line));
        CHECK(tiny[0] == 'x');
        CHECK(strstr(stackllama_last_error(), "needed") != NULL);
        CHECK(strstr(stackllama_last_error(), "stackllama_tokenizer_decode") != NULL);
        CHECK_FAILS(stackllama_tokenizer_decode(tok, line_ids, n_line, true, buf, len, &len),
                    STACKLLAMA_ERROR_BUFFER_TOO_SMALL); /* no room for the NUL */
        CHECK_OK(stackllama_tokenizer_decode(tok, line_ids, n_line, true, buf, len + 1, &len));
        CHECK(strcmp(buf, line) == 0);
        CHECK_OK(stackllama_tokenizer_decode(tok, line_ids, n_line, false, buf, sizeof buf, &len));
        CHECK(strstr(buf, "<s>") != NULL || strcmp(buf, line) == 0);
    }
    CHECK_OK(stackllama_tokenizer_decode(tok, expected, 0, true, buf, sizeof buf, &len));
    CHECK(len == 0 && buf[0] == '\0');
    small[0] = 100000;
    CHECK_FAILS(stackllama_tokenizer_decode(tok, small, 1, true, buf, sizeof buf, &len),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);

    /* Pieces. */
    CHECK_OK(stackllama_tokenizer_id_to_piece(tok, 1, buf, sizeof buf, &len));
    CHECK(strcmp(buf, "<s>") == 0 && len == 3);
    CHECK(stackllama_tokenizer_piece_to_id(tok, "<s>") == 1);
    CHECK(stackllama_tokenizer_piece_to_id(tok, "no such piece at all") == -1);
    CHECK_OK(stackllama_tokenizer_id_to_piece(tok, expected[3], NULL, 0, &len));
    CHECK_FAILS(stackllama_tokenizer_id_to_piece(tok, -1, buf, sizeof buf, &len),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_FAILS(stackllama_tokenizer_id_to_piece(tok, 1, tiny, 2, &len),
                STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
    CHECK(len == 3);

    /* A tokenizer loaded on its own agrees; it outlives nothing. */
    CHECK_OK(stackllama_tokenizer_load(model_dir, &tok2));
    CHECK_OK(stackllama_tokenizer_encode(tok2, prompt, true, ids, 512, &n));
    CHECK(n == n_expected && memcmp(ids, expected, n * sizeof *ids) == 0);
    CHECK_FAILS(stackllama_tokenizer_load("/nonexistent", &tok2), STACKLLAMA_ERROR_IO);
    stackllama_tokenizer_free(tok2);
    stackllama_tokenizer_free(tok);
    free(prompt);
}

static void test_generate(stackllama_generator *gen, const stackllama_model *model,
                          const char *ref) {
    stream_state s;
    stackllama_result *r;
    char *prompt = read_file(ref, "prompt.txt", NULL);
    int32_t ids[512], cache[512];
    size_t n_ids = read_ids(ref, "prompt.ids", ids, 512), n = 0, rows = 0;
    const float *logits = NULL;

    /* Streamed and returned text and tokens equal the C++ API's. */
    init_stream(&s);
    r = generate_prompt(gen, prompt, &s);
    check_tokens(r, ref, "base");
    CHECK(s.len == stackllama_result_text_len(r));
    CHECK(strcmp(s.text, stackllama_result_text(r)) == 0);
    /* The callback saw each token but a final EOS. */
    if (stackllama_result_finish_reason(r) == STACKLLAMA_FINISH_EOS)
        CHECK(s.n_tokens + 1 == stackllama_result_n_tokens(r));
    else
        CHECK(stackllama_result_finish_reason(r) == STACKLLAMA_FINISH_LENGTH &&
              s.n_tokens == stackllama_result_n_tokens(r));
    stackllama_result_free(r);

    /* The same from ids, without a result handle. */
    CHECK_OK(stackllama_generator_reset(gen));
    init_stream(&s);
    {
        stackllama_generation_params gp;
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.max_new_tokens = MAX_NEW_TOKENS;
        CHECK_OK(stackllama_generator_generate_tokens(gen, ids, n_ids, &gp, collect, &s, NULL));
    }
    {
        char *text = read_file(ref, "base.text", NULL);
        CHECK(strcmp(s.text, text) == 0);
        free(text);
    }
    CHECK(stackllama_generator_n_past(gen) > (int32_t)n_ids);
    CHECK_OK(stackllama_generator_tokens(gen, NULL, 0, &n));
    CHECK(n == (size_t)stackllama_generator_n_past(gen));
    CHECK_FAILS(stackllama_generator_tokens(gen, cache, 1, &n), STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
    CHECK_OK(stackllama_generator_tokens(gen, cache, 512, &n));
    CHECK(memcmp(cache, ids, n_ids * sizeof *ids) == 0);

    /* Logits of every prompt token, bit for bit. */
    CHECK_OK(stackllama_generator_reset(gen));
    CHECK(stackllama_generator_n_past(gen) == 0);
    CHECK_OK(stackllama_generator_eval(gen, ids, n_ids, true, &logits, &rows));
    CHECK(rows == n_ids);
    check_logits(logits, rows, (size_t)stackllama_model_n_vocab(model), ref, "base");
    /* Last row only; out_n_rows may be NULL. */
    CHECK_OK(stackllama_generator_reset(gen));
    CHECK_OK(stackllama_generator_eval(gen, ids, n_ids, false, &logits, NULL));
    CHECK_FAILS(stackllama_generator_eval(gen, ids, 0, false, &logits, &rows),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    ids[0] = 1 << 20;
    CHECK_FAILS(stackllama_generator_eval(gen, ids, 1, false, &logits, &rows),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "vocabulary") != NULL);
    CHECK_FAILS(stackllama_generator_eval(gen, ids, 1, false, NULL, &rows),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);

    /* Cancel from the callback (return false) and through stackllama_generator_cancel. */
    init_stream(&s);
    s.stop_after = 3;
    CHECK_OK(stackllama_generator_reset(gen));
    CHECK_OK(stackllama_generator_generate(gen, prompt, NULL, collect, &s, &r));
    CHECK(stackllama_result_finish_reason(r) == STACKLLAMA_FINISH_CANCELLED);
    CHECK(stackllama_result_n_tokens(r) == 3);
    stackllama_result_free(r);
    init_stream(&s);
    s.stop_after = 2;
    s.cancel_this = gen;
    CHECK_OK(stackllama_generator_reset(gen));
    CHECK_OK(stackllama_generator_generate(gen, prompt, NULL, collect, &s, &r));
    CHECK(stackllama_result_finish_reason(r) == STACKLLAMA_FINISH_CANCELLED);
    CHECK(stackllama_result_n_tokens(r) == 2);
    stackllama_result_free(r);
    /* A cancel while nothing runs does not affect the next generation. */
    stackllama_generator_cancel(gen);
    check_generation(gen, prompt, ref, "base");
    free(prompt);
}

static void test_context_limits(const stackllama_model *model, const char *ref) {
    stackllama_generator_params gp;
    stackllama_generator *small = NULL;
    stackllama_result *r = NULL;
    char *prompt = read_file(ref, "prompt.txt", NULL);

    stackllama_generator_params_init(&gp, sizeof gp);
    CHECK(gp.struct_size == sizeof gp && gp.n_ctx == 0);
    gp.n_ctx = 4;
    CHECK_OK(stackllama_generator_create(model, &gp, &small));
    CHECK(stackllama_generator_n_ctx(small) == 4);
    CHECK_FAILS(stackllama_generator_generate(small, prompt, NULL, NULL, NULL, &r),
                STACKLLAMA_ERROR_OUT_OF_RANGE);
    CHECK(r == NULL);
    stackllama_generator_free(small);
    gp.n_ctx = -1;
    small = NULL;
    CHECK_FAILS(stackllama_generator_create(model, &gp, &small), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(small == NULL);
    gp.n_ctx = 1 << 30;
    CHECK_FAILS(stackllama_generator_create(model, &gp, &small), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    free(prompt);
}

/* Worker pools: bad counts refused; generators on one pool (freed before them: they keep it)
 * give the reference output; a caller's struct without the pool field never has it read. */
static void test_pool(const stackllama_model *model, const char *ref) {
    stackllama_pool *pool = NULL;
    stackllama_generator_params gp;
    stackllama_generator *g1 = NULL, *g2 = NULL, *old = NULL;
    char *prompt = read_file(ref, "prompt.txt", NULL);

    CHECK_FAILS(stackllama_pool_create(-1, &pool), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "n_threads") != NULL);
    CHECK_FAILS(stackllama_pool_create(1025, &pool), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "1025") != NULL);
    CHECK(pool == NULL);
    CHECK_FAILS(stackllama_pool_create(2, NULL), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "out_pool") != NULL);
    CHECK(stackllama_pool_n_threads(NULL) == 0);
    stackllama_pool_free(NULL);
    CHECK_OK(stackllama_pool_create(0, &pool));
    CHECK(stackllama_pool_n_threads(pool) >= 1);
    stackllama_pool_free(pool);
    pool = NULL;

    CHECK_OK(stackllama_pool_create(N_THREADS, &pool));
    CHECK(stackllama_pool_n_threads(pool) == N_THREADS);
    stackllama_generator_params_init(&gp, sizeof gp);
    CHECK(gp.pool == NULL);
    gp.pool = pool;
    CHECK_OK(stackllama_generator_create(model, &gp, &g1));
    CHECK_OK(stackllama_generator_create(model, &gp, &g2));
    stackllama_pool_free(pool);
    check_generation(g1, prompt, ref, "base");
    check_generation(g2, prompt, ref, "base");
    stackllama_generator_free(g1);
    stackllama_generator_free(g2);

    /* Built against the 0.1 header: the struct ends before pool. */
    stackllama_generator_params_init(&gp, sizeof gp);
    gp.pool = (stackllama_pool *)&gp; /* not a pool: must be ignored */
    gp.struct_size = (uint32_t)offsetof(stackllama_generator_params, pool);
    CHECK_OK(stackllama_generator_create(model, &gp, &old));
    check_generation(old, prompt, ref, "base");
    stackllama_generator_free(old);
    free(prompt);
}

static void test_adapters(stackllama_model *model, const char *adapter_dir, const char *ref,
                          const char *scratch) {
    stackllama_adapter *adapter = NULL, *adapter2 = NULL;
    stackllama_generator *gen = NULL, *gen2 = NULL;
    stackllama_model *merged = NULL, *reloaded = NULL;
    char *prompt = read_file(ref, "prompt.txt", NULL);
    int32_t ids[512];
    size_t n_ids = read_ids(ref, "prompt.ids", ids, 512), rows = 0;
    const float *logits = NULL;
    float scale = ADAPTER_SCALE;
    char dir[4096];

    CHECK_FAILS(stackllama_adapter_load(model, "/nonexistent/adapter", &adapter), STACKLLAMA_ERROR_IO);
    CHECK(adapter == NULL);
    CHECK_OK(stackllama_adapter_load(model, adapter_dir, &adapter));
    CHECK(strcmp(stackllama_adapter_path(adapter), adapter_dir) == 0);
    CHECK(stackllama_adapter_rank(adapter) == 4);
    CHECK(stackllama_adapter_alpha(adapter) == 8.0f);
    CHECK(stackllama_adapter_n_attached(adapter) == 0);

    CHECK_OK(stackllama_generator_create(model, NULL, &gen));
    CHECK_OK(stackllama_generator_attach(gen, adapter, ADAPTER_SCALE));
    CHECK(stackllama_generator_n_attached(gen) == 1);
    CHECK(stackllama_adapter_n_attached(adapter) == 1);
    CHECK_FAILS(stackllama_generator_attach(gen, adapter, 1.0f), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "already attached") != NULL);
    CHECK(stackllama_adapter_n_attached(adapter) == 1);

    check_generation(gen, prompt, ref, "adapter");
    CHECK_OK(stackllama_generator_reset(gen));
    CHECK_OK(stackllama_generator_eval(gen, ids, n_ids, true, &logits, &rows));
    check_logits(logits, rows, (size_t)stackllama_model_n_vocab(model), ref, "adapter");

    /* Freeing an attached adapter is refused, with a message; the adapter stays usable. */
    CHECK_FAILS(stackllama_adapter_free(adapter), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "still attached to 1 generator") != NULL);
    CHECK(stackllama_adapter_rank(adapter) == 4);

    /* Two generators hold it; freeing one releases its hold. */
    CHECK_OK(stackllama_generator_create(model, NULL, &gen2));
    CHECK_OK(stackllama_generator_attach(gen2, adapter, 1.0f));
    CHECK(stackllama_adapter_n_attached(adapter) == 2);
    stackllama_generator_free(gen2);
    CHECK(stackllama_adapter_n_attached(adapter) == 1);

    /* Detach: the base model's output again. Detaching twice is an error. */
    CHECK_OK(stackllama_generator_detach(gen, adapter));
    CHECK(stackllama_adapter_n_attached(adapter) == 0);
    CHECK(stackllama_generator_n_attached(gen) == 0);
    CHECK_FAILS(stackllama_generator_detach(gen, adapter), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(stackllama_last_error(), "not attached") != NULL);
    check_generation(gen, prompt, ref, "base");

    /* detach_all releases every hold. */
    CHECK_OK(stackllama_adapter_load(model, adapter_dir, &adapter2));
    CHECK_OK(stackllama_generator_attach(gen, adapter, ADAPTER_SCALE));
    CHECK_OK(stackllama_generator_detach_all(gen));
    CHECK(stackllama_adapter_n_attached(adapter) == 0);
    CHECK_FAILS(stackllama_generator_attach(gen, adapter2, NAN), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(stackllama_adapter_n_attached(adapter2) == 0);
    CHECK_OK(stackllama_adapter_free(adapter2));

    /* Merge: a new model equal to the adapter applied unmerged (same tokens as the C++ merge). */
    CHECK_FAILS(stackllama_model_merge_adapters(model, NULL, NULL, 1, &merged),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_OK(stackllama_model_merge_adapters(model, (const stackllama_adapter *const *)&adapter,
                                             &scale, 1, &merged));
    CHECK(merged != NULL && merged != model);
    CHECK(strcmp(stackllama_model_weight_dtype(merged), "f32") == 0);
    stackllama_generator_free(gen);
    gen = NULL;
    CHECK_OK(stackllama_generator_create(merged, NULL, &gen));
    check_generation(gen, prompt, ref, "merged");
    stackllama_generator_free(gen);
    gen = NULL;

    /* save_pretrained and load again: the same output. */
    snprintf(dir, sizeof dir, "%s/merged-hf", scratch);
    CHECK_OK(stackllama_model_save_pretrained(merged, dir));
    CHECK_OK(stackllama_model_load(dir, NULL, &reloaded));
    CHECK_OK(stackllama_generator_create(reloaded, NULL, &gen));
    check_generation(gen, prompt, ref, "merged");

    /* A model handle may go first: the generator keeps its model alive. */
    stackllama_model_free(reloaded);
    check_generation(gen, prompt, ref, "merged");
    stackllama_generator_free(gen);
    stackllama_model_free(merged);
    CHECK_OK(stackllama_adapter_free(adapter));
    free(prompt);
}

static void read_floats(const char *ref, const char *name, float *out, size_t cap, size_t *n) {
    size_t size;
    char *bytes = read_file(ref, name, &size);
    *n = size / sizeof(float);
    if (*n > cap) *n = cap;
    memcpy(out, bytes, *n * sizeof(float));
    free(bytes);
}

typedef struct {
    char text[8][1024];
    size_t len[8];
} batch_state;

static bool collect_batch(size_t seq, const char *piece, size_t piece_len, int32_t token,
                          void *user_data) {
    batch_state *b = (batch_state *)user_data;
    (void)token;
    if (seq < 8 && b->len[seq] + piece_len < sizeof b->text[seq]) {
        memcpy(b->text[seq] + b->len[seq], piece, piece_len);
        b->len[seq] += piece_len;
        b->text[seq][b->len[seq]] = '\0';
    }
    return true;
}

static void sampling_params(stackllama_generation_params *gp) {
    stackllama_generation_params_init(gp, sizeof *gp);
    gp->max_new_tokens = MAX_NEW_TOKENS;
    gp->do_sample = 1;
    gp->temperature = 0.9f;
    gp->top_k = 100;
    gp->top_p = 0.95f;
    gp->has_seed = 1;
    gp->seed = 42;
}

static void test_batch(stackllama_generator *gen, const char *ref) {
    char *prompt = read_file(ref, "prompt.txt", NULL);
    const char *prompts[2];
    stackllama_generation_params gp;
    stackllama_result *results[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0, i;
    batch_state b;
    prompts[0] = prompt;
    prompts[1] = prompt;

    /* The size query runs nothing; a short array is refused before any work. */
    sampling_params(&gp);
    gp.num_return_sequences = 2;
    CHECK_OK(stackllama_generator_generate_batch(gen, prompts, 2, &gp, NULL, NULL, NULL, 0, &n));
    CHECK(n == 4);
    n = 0;
    CHECK_FAILS(stackllama_generator_generate_batch(gen, prompts, 2, &gp, NULL, NULL, results, 3, &n),
                STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
    CHECK(n == 4 && results[0] == NULL);
    memset(&b, 0, sizeof b);
    CHECK_OK(stackllama_generator_generate_batch(gen, prompts, 2, &gp, collect_batch, &b, results,
                                                 4, &n));
    CHECK(n == 4);
    /* Sequence j samples with seed + j: sequence 0 of each prompt is the single run with seed 42. */
    check_tokens(results[0], ref, "sampled");
    check_tokens(results[2], ref, "sampled");
    CHECK(stackllama_result_seed(results[1]) == 43);
    for (i = 0; i < 4; ++i) {
        CHECK(strcmp(b.text[i], stackllama_result_text(results[i])) == 0);
        stackllama_result_free(results[i]);
        results[i] = NULL;
    }
    CHECK(stackllama_generator_n_past(gen) == 0); /* leaves an empty sequence */
    /* Greedy, one per prompt. */
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = MAX_NEW_TOKENS;
    CHECK_OK(stackllama_generator_generate_batch(gen, prompts, 2, &gp, NULL, NULL, results, 4, &n));
    CHECK(n == 2);
    check_tokens(results[0], ref, "base");
    check_tokens(results[1], ref, "base");
    stackllama_result_free(results[0]);
    stackllama_result_free(results[1]);
    CHECK_FAILS(stackllama_generator_generate_batch(gen, prompts, 2, &gp, NULL, NULL, NULL, 0, NULL),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    free(prompt);
}

static void test_scoring(stackllama_model *model, const char *fixtures, const char *ref) {
    char *prompt = read_file(ref, "prompt.txt", NULL);
    char *base_text = read_file(ref, "base.text", NULL);
    char dir[4096], *full;
    int32_t ids[512], tokens[256];
    float expected[256], values[8];
    size_t n_ids = read_ids(ref, "prompt.ids", ids, 512);
    size_t n_tokens = read_ids(ref, "base.tokens", tokens, 256), n = 0, i;
    stackllama_generator *gen = NULL, *policy = NULL, *judge = NULL;
    stackllama_adapter *adapter = NULL, *rm = NULL;
    stackllama_logprobs *lp = NULL;
    stackllama_result *r = NULL, *answers[3] = {NULL, NULL, NULL};
    double ppl = 0.0, sum = 0.0;
    float scale = ADAPTER_SCALE, one = 1.0f;

    CHECK_OK(stackllama_generator_create(model, NULL, &gen));
    /* The greedy tokens' log-probabilities, as generated and as scored. */
    r = generate_prompt(gen, prompt, NULL);
    read_floats(ref, "base.logprobs.f32", expected, 256, &n);
    CHECK(n == n_tokens && stackllama_result_logprobs(r) != NULL);
    for (i = 0; i < n && i < stackllama_result_n_tokens(r); ++i)
        CHECK(stackllama_result_logprobs(r)[i] == expected[i]);
    stackllama_result_free(r);
    CHECK_OK(stackllama_generator_log_likelihood_tokens(gen, ids, n_ids, tokens, n_tokens, &lp));
    CHECK(stackllama_logprobs_n_tokens(lp) == n_tokens);
    for (i = 0; i < n_tokens && i < stackllama_logprobs_n_tokens(lp); ++i) {
        CHECK(stackllama_logprobs_tokens(lp)[i] == tokens[i]);
        CHECK(fabs(stackllama_logprobs_values(lp)[i] - expected[i]) < 1e-3);
        sum += stackllama_logprobs_values(lp)[i];
    }
    CHECK(fabs(stackllama_logprobs_sum(lp) - sum) < 1e-3);
    stackllama_logprobs_free(lp);
    lp = NULL;
    CHECK_OK(stackllama_generator_log_likelihood(gen, "Question: how", " do I sort", &lp));
    CHECK(stackllama_logprobs_n_tokens(lp) > 0 && stackllama_logprobs_sum(lp) < 0.0);
    stackllama_logprobs_free(lp);
    lp = NULL;
    CHECK_FAILS(stackllama_generator_log_likelihood_tokens(gen, ids, 0, tokens, 1, &lp),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(lp == NULL);
    CHECK(stackllama_logprobs_n_tokens(NULL) == 0 && stackllama_logprobs_sum(NULL) == 0.0);
    CHECK(stackllama_logprobs_tokens(NULL) == NULL && stackllama_logprobs_values(NULL) == NULL);
    stackllama_logprobs_free(NULL);
    CHECK_OK(stackllama_generator_perplexity(gen, prompt, &ppl));
    CHECK(ppl > 1.0);
    CHECK_OK(stackllama_generator_perplexity_tokens(gen, ids, n_ids, &ppl));
    CHECK(ppl > 1.0);
    CHECK_FAILS(stackllama_generator_perplexity_tokens(gen, ids, 1, &ppl),
                STACKLLAMA_ERROR_INVALID_ARGUMENT);

    /* Rewards: none without a score head; with the reward adapter, the C++ API's value. */
    CHECK_FAILS(stackllama_generator_reward(gen, prompt, values, 8, &n), STACKLLAMA_ERROR_UNSUPPORTED);
    snprintf(dir, sizeof dir, "%s/rm_adapter", fixtures);
    CHECK_OK(stackllama_adapter_load(model, dir, &rm));
    snprintf(dir, sizeof dir, "%s/adapter", fixtures);
    CHECK_OK(stackllama_adapter_load(model, dir, &adapter));
    CHECK_OK(stackllama_generator_attach(gen, rm, 1.0f));
    full = (char *)malloc(strlen(prompt) + strlen(base_text) + 1);
    strcpy(full, prompt);
    strcat(full, base_text);
    read_floats(ref, "reward.f32", expected, 256, &n);
    CHECK(n == 1);
    CHECK_OK(stackllama_generator_reward(gen, full, NULL, 0, &n));
    CHECK(n == 1);
    CHECK_FAILS(stackllama_generator_reward(gen, full, values, 0, &n),
                STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
    CHECK(n == 1 && strstr(stackllama_last_error(), "floats") != NULL);
    CHECK_FAILS(stackllama_generator_reward(gen, full, NULL, 4, &n), STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK_OK(stackllama_generator_reward(gen, full, values, 8, &n));
    CHECK(n == 1 && values[0] == expected[0]);
    {
        const char *texts[2];
        float rows[4];
        texts[0] = full;
        texts[1] = prompt;
        CHECK_OK(stackllama_generator_reward_batch(gen, texts, 2, NULL, 0, &n));
        CHECK(n == 1);
        CHECK_FAILS(stackllama_generator_reward_batch(gen, texts, 2, rows, 1, &n),
                    STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
        CHECK_OK(stackllama_generator_reward_batch(gen, texts, 2, rows, 4, &n));
        CHECK(n == 1 && fabs(rows[0] - expected[0]) < 1e-4);
    }
    CHECK_OK(stackllama_generator_detach(gen, rm));

    /* best_of_n over one generator with two adapter sets, and over two generators. */
    {
        stackllama_generation_params gp;
        char *lines = read_file(ref, "best_of_n.txt", NULL), *p = lines, *end;
        size_t k, n_answers = 0;
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.do_sample = 1;
        gp.temperature = 0.9f;
        gp.has_seed = 1;
        gp.seed = 42;
        gp.num_return_sequences = 3;
        gp.max_new_tokens = 16;
        CHECK_OK(stackllama_generator_best_of_n_adapters(
            gen, (const stackllama_adapter *const *)&adapter, &scale, 1,
            (const stackllama_adapter *const *)&rm, &one, 1, prompt, &gp, NULL, 0, &n));
        CHECK(n == 3);
        CHECK_OK(stackllama_generator_best_of_n_adapters(
            gen, (const stackllama_adapter *const *)&adapter, &scale, 1,
            (const stackllama_adapter *const *)&rm, NULL, 1, prompt, &gp, answers, 3, &n_answers));
        CHECK(n_answers == 3 && stackllama_generator_n_attached(gen) == 0);
        for (k = 0; k < n_answers; ++k) {
            size_t index = (size_t)strtoul(p, &end, 10), n_reward = 0, j = 0;
            float reward = (float)strtod(end, &end);
            const float *got = stackllama_result_reward(answers[k], &n_reward);
            p = end;
            CHECK(stackllama_result_index(answers[k]) == index);
            CHECK(n_reward == 1 && got && got[0] == reward);
            for (j = 0; j < stackllama_result_n_tokens(answers[k]); ++j)
                CHECK(stackllama_result_tokens(answers[k])[j] == (int32_t)strtol(p, &p, 10));
            while (*p == ' ' || *p == '\n') ++p;
            stackllama_result_free(answers[k]);
            answers[k] = NULL;
        }
        /* Two generators over the same model. */
        CHECK_OK(stackllama_generator_create(model, NULL, &policy));
        CHECK_OK(stackllama_generator_create(model, NULL, &judge));
        CHECK_OK(stackllama_generator_attach(policy, adapter, ADAPTER_SCALE));
        CHECK_OK(stackllama_generator_attach(judge, rm, 1.0f));
        CHECK_FAILS(stackllama_generator_best_of_n(policy, judge, prompt, &gp, answers, 2, &n),
                    STACKLLAMA_ERROR_BUFFER_TOO_SMALL);
        CHECK_OK(stackllama_generator_best_of_n(policy, judge, prompt, &gp, answers, 3, &n));
        p = lines;
        for (k = 0; k < n; ++k) {
            size_t index = (size_t)strtoul(p, &end, 10);
            const float *got = stackllama_result_reward(answers[k], NULL);
            CHECK(stackllama_result_index(answers[k]) == index);
            CHECK(got && fabs(got[0] - (float)strtod(end, &end)) < 1e-4);
            p = strchr(end, '\n');
            p = p ? p + 1 : end;
            stackllama_result_free(answers[k]);
        }
        CHECK(stackllama_result_reward(NULL, &n) == NULL && n == 0);
        CHECK(stackllama_result_index(NULL) == 0 && stackllama_result_seed(NULL) == 0);
        CHECK(stackllama_result_logprobs(NULL) == NULL);
        CHECK(strcmp(stackllama_result_stop_string(NULL), "") == 0);
        free(lines);
    }
    stackllama_generator_free(policy);
    stackllama_generator_free(judge);
    stackllama_generator_free(gen);
    CHECK_OK(stackllama_adapter_free(adapter));
    CHECK_OK(stackllama_adapter_free(rm));
    free(full);
    free(base_text);
    free(prompt);
}

int main(int argc, char **argv) {
    char adapter_dir[4096];
    stackllama_model_params mp;
    stackllama_model *model = NULL;
    stackllama_generator *gen = NULL;
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL_DIR FIXTURE_DIR REFERENCE_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", argv[2]);
    CHECK(strcmp(stackllama_last_error(), "") == 0); /* nothing failed yet on this thread */
    test_version();
    test_null_arguments(argv[1]);

    CHECK_FAILS(stackllama_model_load("/nonexistent/model", NULL, &model), STACKLLAMA_ERROR_IO);
    CHECK(strstr(stackllama_last_error(), "/nonexistent/model") != NULL);
    stackllama_model_params_init(&mp, sizeof mp);
    mp.n_threads = N_THREADS;
    CHECK_OK(stackllama_model_load(argv[1], &mp, &model));
    if (!model) return 1;
    CHECK(stackllama_model_n_vocab(model) == 600);
    CHECK(stackllama_model_n_ctx_train(model) == 1024);
    CHECK(stackllama_model_n_layers(model) == 4);
    CHECK(stackllama_model_hidden_size(model) == 128);
    CHECK(stackllama_model_n_threads(model) == N_THREADS);
    CHECK(stackllama_model_n_labels(model) == 0);
    CHECK(strcmp(stackllama_model_path(model), argv[1]) == 0);
    CHECK(strcmp(stackllama_model_weight_dtype(model), "f32") == 0);
    CHECK(stackllama_model_has_tokenizer(model));
    CHECK_OK(stackllama_generator_create(model, NULL, &gen));
    CHECK(stackllama_generator_n_ctx(gen) == 1024);

    test_params(argv[1], argv[3], gen);
    test_tokenizer(model, argv[1], argv[3]);
    test_generate(gen, model, argv[3]);
    test_context_limits(model, argv[3]);
    test_pool(model, argv[3]);
    test_adapters(model, adapter_dir, argv[3], argv[4]);
    test_batch(gen, argv[3]);
    test_scoring(model, argv[2], argv[3]);

    /* KV sessions: a saved prefix restored into a second generator continues identically. */
    {
        char path[4096];
        stackllama_generator *g2 = NULL;
        stackllama_result *r1 = NULL, *r2 = NULL;
        stackllama_generation_params gp;
        stackllama_generation_params_init(&gp, sizeof gp);
        gp.max_new_tokens = 8;
        snprintf(path, sizeof path, "%s/prefix.session", argv[4]);
        CHECK_FAILS(stackllama_generator_save_session(NULL, path),
                    STACKLLAMA_ERROR_INVALID_ARGUMENT);
        CHECK_FAILS(stackllama_generator_save_session(gen, NULL),
                    STACKLLAMA_ERROR_INVALID_ARGUMENT);
        CHECK_OK(stackllama_generator_reset(gen));
        CHECK_OK(stackllama_generator_generate(gen, "What is a session?", &gp, NULL, NULL, &r1));
        CHECK_OK(stackllama_generator_save_session(gen, path));
        CHECK_OK(stackllama_generator_create(model, NULL, &g2));
        CHECK_OK(stackllama_generator_load_session(g2, path));
        CHECK(stackllama_generator_n_past(g2) == stackllama_generator_n_past(gen));
        CHECK_FAILS(stackllama_generator_load_session(g2, "/nonexistent.session"),
                    STACKLLAMA_ERROR_IO);
        CHECK(strstr(stackllama_last_error(), "/nonexistent.session") != NULL);
        stackllama_result_free(r1);
        stackllama_result_free(r2);
        stackllama_generator_free(g2);
    }

    /* A model loaded without its tokenizer has none to give. */
    {
        stackllama_model *bare = NULL;
        stackllama_tokenizer *tok = NULL;
        stackllama_model_params_init(&mp, sizeof mp);
        mp.load_tokenizer = 0;
        CHECK_OK(stackllama_model_load(argv[1], &mp, &bare));
        CHECK(!stackllama_model_has_tokenizer(bare));
        CHECK_FAILS(stackllama_model_get_tokenizer(bare, &tok), STACKLLAMA_ERROR_INVALID_ARGUMENT);
        CHECK(tok == NULL);
        stackllama_model_free(bare);
    }

    stackllama_generator_free(gen);
    stackllama_model_free(model);
    printf("capi_test.c: %d checks, %d failures\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
