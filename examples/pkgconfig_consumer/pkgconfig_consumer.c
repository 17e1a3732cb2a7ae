/* Built with `pkg-config --cflags --libs stackllama`; prints a greedy answer of 32 tokens from the
 * model given on the command line, streamed through the C ABI. */
#include <stackllama/stackllama.h>
#include <stdio.h>

static bool print_piece(const char *piece, size_t len, int32_t token, void *user_data) {
    (void)token;
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    return true;
}

int main(int argc, char **argv) {
    stackllama_model *model = NULL;
    stackllama_generator *gen = NULL;
    stackllama_model_params mp;
    stackllama_generation_params gp;
    stackllama_status st = STACKLLAMA_ERROR_INVALID_ARGUMENT;
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    fprintf(stderr, "stackllama %s (header %d.%d.%d)\n", stackllama_version(),
            STACKLLAMA_VERSION_MAJOR, STACKLLAMA_VERSION_MINOR, STACKLLAMA_VERSION_PATCH);
    stackllama_model_params_init(&mp, sizeof mp);
    mp.n_threads = 2;
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = 32;
    if ((st = stackllama_model_load(argv[1], &mp, &model)) == STACKLLAMA_OK &&
        (st = stackllama_generator_create(model, NULL, &gen)) == STACKLLAMA_OK)
        st = stackllama_generator_generate(gen, "Question: How do I sort a dict?\n\nAnswer: ", &gp,
                                           print_piece, NULL, NULL);
    if (st != STACKLLAMA_OK) fprintf(stderr, "error: %s\n", stackllama_last_error());
    stackllama_generator_free(gen);
    stackllama_model_free(model);
    return st == STACKLLAMA_OK ? 0 : 1;
}
