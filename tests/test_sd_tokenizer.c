/* CLIP BPE tokenizer parity with openai/CLIP on every case of sd_tiny/tokens.json: the cleaned
 * text, the BPE pieces, the raw ids and the 77 framed ids. */
#include "asam/sd.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "test_util.h"

#include <cjson/cJSON.h>

int main(void) {
    char path[4096];
    if (test_data_file("sd_tiny/tokens.json", path, sizeof path))
        TEST_SKIP("sd_tiny/tokens.json not found");
    char *json;
    size_t n;
    CHECK(asam_read_file(path, &json, &n) == 0, "read %s", path);
    cJSON *root = cJSON_Parse(json);
    free(json);
    CHECK(root != NULL, "parse tokens.json");
    if (!root) return test_finish("test_sd_tokenizer");

    /* The project's built-in copy of the vocabulary (data/clip) is what CompVis files use. */
    asam_clip_tokenizer *tok = NULL;
    CHECK(asam_clip_tokenizer_load_dir(NULL, &tok) == 0, "load %s: %s", asam_clip_default_dir(),
          asam_last_error());
    if (!tok) return test_finish("test_sd_tokenizer");

    int n_cases = 0;
    cJSON *cases = cJSON_GetObjectItem(root, "cases");
    cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *clean = cJSON_GetObjectItem(c, "clean_text")->valuestring;
        cJSON *pieces = cJSON_GetObjectItem(c, "bpe_pieces");
        cJSON *ids_raw = cJSON_GetObjectItem(c, "ids_raw");
        cJSON *ids = cJSON_GetObjectItem(c, "ids");
        n_cases++;

        char *got_clean = asam_clip_clean_text(text);
        CHECK(got_clean && !strcmp(got_clean, clean), "%s: clean text '%s' != '%s'", name,
              got_clean ? got_clean : "(null)", clean);
        free(got_clean);

        int64_t *raw = NULL;
        size_t nr = 0;
        char **pc = NULL;
        CHECK(asam_clip_encode(tok, text, &raw, &nr, &pc) == 0, "%s: encode: %s", name,
              asam_last_error());
        int nref = cJSON_GetArraySize(ids_raw);
        int ok = (int)nr == nref && cJSON_GetArraySize(pieces) == nref;
        for (int i = 0; ok && i < nref; i++)
            ok = raw[i] == (int64_t)cJSON_GetArrayItem(ids_raw, i)->valuedouble &&
                 !strcmp(pc[i], cJSON_GetArrayItem(pieces, i)->valuestring);
        CHECK(ok, "%s: %zu raw ids/pieces vs %d expected", name, nr, nref);
        if (!ok)
            for (size_t i = 0; i < nr; i++)
                fprintf(stderr, "   %zu: %lld '%s' (want %s)\n", i, (long long)raw[i], pc[i],
                        i < (size_t)nref ? cJSON_GetArrayItem(pieces, (int)i)->valuestring : "-");
        free(raw);
        asam_clip_free_pieces(pc, nr);

        int64_t framed[ASAM_CLIP_CONTEXT];
        int nraw = asam_clip_tokenize(tok, text, framed);
        CHECK(nraw == nref, "%s: tokenize returned %d", name, nraw);
        ok = cJSON_GetArraySize(ids) == ASAM_CLIP_CONTEXT;
        for (int i = 0; ok && i < ASAM_CLIP_CONTEXT; i++)
            ok = framed[i] == (int64_t)cJSON_GetArrayItem(ids, i)->valuedouble;
        CHECK(ok, "%s: framed ids differ", name);
        if (ok) printf("ok   %-28s %3d ids\n", name, nraw);
    }
    CHECK(n_cases >= 30, "only %d cases", n_cases);

    /* Arbitrary bytes (invalid UTF-8, control characters, lone '&') never fail or overflow. */
    {
        uint64_t r = 1;
        char buf[301];
        int bad = 0;
        for (int it = 0; it < 300; it++) {
            int len = it % 300;
            for (int i = 0; i < len; i++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                buf[i] = (char)(1 + (r >> 33) % 255);
            }
            buf[len] = 0;
            int64_t ids[ASAM_CLIP_CONTEXT];
            int nr = asam_clip_tokenize(tok, buf, ids);
            bad += nr < 0 || ids[0] != ASAM_CLIP_BOS || ids[76] != ASAM_CLIP_EOS;
        }
        CHECK(bad == 0, "%d random byte strings failed", bad);
        if (!bad) printf("ok   300 random byte strings\n");
    }

    /* Missing files are reported by name. */
    asam_clip_tokenizer *bad = NULL;
    CHECK(asam_clip_tokenizer_load_dir("/nonexistent-dir", &bad) == -1 && !bad,
          "missing dir loads");
    CHECK(strstr(asam_last_error(), "/nonexistent-dir/vocab.json") != NULL,
          "error names the file: %s", asam_last_error());

    asam_clip_tokenizer_free(tok);
    cJSON_Delete(root);
    return test_finish("test_sd_tokenizer");
}
