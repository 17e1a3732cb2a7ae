/* Built against the installed package with find_package(stackllama), as C99; prints a greedy
 * answer of 32 tokens from the model given on the command line, through the C ABI. */
#include <stackllama/stackllama.h>
#include <stdio.h>

#if STACKLLAMA_VERSION_NUMBER < 100
#error "this example needs stackllama 0.1 or newer"
#endif

int main(int argc, char **argv) {
    stackllama_model *model = NULL;
    stackllama_generator *gen = NULL;
    stackllama_result *result = NULL;
    stackllama_model_params mp;
    stackllama_generation_params gp;
    int rc = 1;
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    fprintf(stderr, "stackllama %s (header %s)\n", stackllama_version(), STACKLLAMA_VERSION_STRING);
    stackllama_model_params_init(&mp, sizeof mp);
    mp.n_threads = 2;
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = 32;
    if (stackllama_model_load(argv[1], &mp, &model) == STACKLLAMA_OK &&
        stackllama_generator_create(model, NULL, &gen) == STACKLLAMA_OK &&
        stackllama_generator_generate(gen, "Question: How do I sort a dict?\n\nAnswer: ", &gp,
                                      NULL, NULL, &result) == STACKLLAMA_OK) {
        fwrite(stackllama_result_text(result), 1, stackllama_result_text_len(result), stdout);
        rc = 0;
    } else {
        fprintf(stderr, "error: %s\n", stackllama_last_error());
    }
    stackllama_result_free(result);
    stackllama_generator_free(gen);
    stackllama_model_free(model);
    return rc;
}
