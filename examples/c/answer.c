/* answer: answers a question with a LLaMA model through stackllama's C ABI, streaming the answer
 * to stdout as it is generated.
 *
 *   answer -m MODEL [-p QUESTION] [-n N] [-t THREADS] [--raw] [--lora DIR [--lora-scale S]]
 *          [--temp T [--seed N]]
 *
 * MODEL is a Hugging Face directory or a native stackllama file. The question is wrapped in the
 * StackLLaMA template "Question: ...\n\nAnswer: " unless --raw is given. Only the answer goes to
 * stdout; errors go to stderr. Build: cc answer.c $(pkg-config --cflags --libs stackllama).
 */
#include <stackllama/stackllama.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Called for every token; `piece` is the text that became final with it. */
static bool print_piece(const char *piece, size_t piece_len, int32_t token, void *user_data) {
    (void)token;
    (void)user_data;
    fwrite(piece, 1, piece_len, stdout);
    fflush(stdout);
    return true; /* false would stop generation */
}

static int fail(const char *what, stackllama_status status) {
    fprintf(stderr, "answer: %s: %s (%s)\n", what, stackllama_last_error(),
            stackllama_status_name(status));
    return 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: answer -m MODEL [-p QUESTION] [-n N] [-t THREADS] [--raw] "
            "[--lora DIR [--lora-scale S]] [--temp T [--seed N]]\n");
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *question = "How do I sort a dict?", *lora = NULL;
    int n_predict = 128, n_threads = 0, raw = 0, i, rc = 1;
    float lora_scale = 1.0f, temp = 0.0f;
    long long seed = -1;
    char *prompt = NULL;
    stackllama_model_params mp;
    stackllama_generation_params gp;
    stackllama_model *model = NULL;
    stackllama_adapter *adapter = NULL;
    stackllama_generator *gen = NULL;
    stackllama_result *result = NULL;
    stackllama_status st;

    for (i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const int has_value = i + 1 < argc;
        if (!strcmp(a, "-m") && has_value) model_path = argv[++i];
        else if (!strcmp(a, "-p") && has_value) question = argv[++i];
        else if (!strcmp(a, "-n") && has_value) n_predict = atoi(argv[++i]);
        else if (!strcmp(a, "-t") && has_value) n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--lora") && has_value) lora = argv[++i];
        else if (!strcmp(a, "--lora-scale") && has_value) lora_scale = (float)atof(argv[++i]);
        else if (!strcmp(a, "--temp") && has_value) temp = (float)atof(argv[++i]);
        else if (!strcmp(a, "--seed") && has_value) seed = atoll(argv[++i]);
        else if (!strcmp(a, "--raw")) raw = 1;
        else {
            usage();
            return 2;
        }
    }
    if (!model_path) {
        usage();
        return 2;
    }
    if (strcmp(stackllama_version(), STACKLLAMA_VERSION_STRING) != 0)
        fprintf(stderr, "answer: note: built with stackllama %s, running with %s\n",
                STACKLLAMA_VERSION_STRING, stackllama_version());

    /* The prompt: the question in the StackLLaMA template, or as given with --raw. */
    {
        const char *pre = raw ? "" : "Question: ", *post = raw ? "" : "\n\nAnswer: ";
        size_t len = strlen(pre) + strlen(question) + strlen(post) + 1;
        prompt = (char *)malloc(len);
        if (!prompt) return 1;
        snprintf(prompt, len, "%s%s%s", pre, question, post);
    }

    stackllama_model_params_init(&mp, sizeof mp);
    mp.n_threads = n_threads;
    if ((st = stackllama_model_load(model_path, &mp, &model)) != STACKLLAMA_OK) {
        rc = fail("loading the model", st);
        goto done;
    }
    if ((st = stackllama_generator_create(model, NULL, &gen)) != STACKLLAMA_OK) {
        rc = fail("creating the generator", st);
        goto done;
    }
    if (lora) {
        if ((st = stackllama_adapter_load(model, lora, &adapter)) != STACKLLAMA_OK) {
            rc = fail("loading the adapter", st);
            goto done;
        }
        if ((st = stackllama_generator_attach(gen, adapter, lora_scale)) != STACKLLAMA_OK) {
            rc = fail("attaching the adapter", st);
            goto done;
        }
    }

    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = n_predict; /* greedy (do_sample = 0) by default */
    if (temp > 0.0f) {
        gp.do_sample = 1;
        gp.temperature = temp;
    }
    if (seed >= 0) {
        gp.has_seed = 1;
        gp.seed = (uint64_t)seed;
    }
    st = stackllama_generator_generate(gen, prompt, &gp, print_piece, NULL, &result);
    if (st != STACKLLAMA_OK) {
        rc = fail("generating", st);
        goto done;
    }
    fprintf(stderr, "\nanswer: %zu tokens, finished by %s\n", stackllama_result_n_tokens(result),
            stackllama_finish_reason_name(stackllama_result_finish_reason(result)));
    rc = 0;

done:
    stackllama_result_free(result);
    stackllama_generator_free(gen); /* detaches the adapter, so it may be freed next */
    if (stackllama_adapter_free(adapter) != STACKLLAMA_OK) rc = fail("freeing the adapter", st);
    stackllama_model_free(model);
    free(prompt);
    return rc;
}
