/* Architectures: canonical text round trips, hash stability, validation
 * messages, sampling/mutation/crossover inside the space, features. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

#include "inifile.h"
#include "space.h"
#include "testutil.h"


static const char *const enc_space =
    "encoder_embed_dim = 64, 96, 128\nencoder_layers = 2..6\nencoder_ffn_dim = 128, 256, 512\n"
    "encoder_heads = 2, 4\nencoder_attention = softmax, cosformer, performer(features=64)\n"
    "encoder_block = standard, attention-only, ffn-only, identity\n"
    "encoder_activation = relu, gelu, squared_relu, gelu_erf\n";

static const char *const s2s_space =
    "encoder_embed_dim = 640, 512\nencoder_layers = 1..3\nencoder_ffn_dim = 3072, 2048, 1024\n"
    "encoder_heads = 8, 4\ndecoder_embed_dim = 640, 512\ndecoder_layers = 1..6\n"
    "decoder_ffn_dim = 3072, 2048, 1024\ndecoder_heads = 8, 4\ndecoder_connect = 1, 2, 3\n"
    "decoder_attention = softmax, linear\ndecoder_cross_attention = softmax, cosformer\nqkv_dim = 512\n";

static void round_trips(const et_space *s, int n, uint64_t seed)
{
    et_rng rng = et_rng_from_seed(seed);
    char a_text[16384], b_text[16384];
    for (int i = 0; i < n; i++) {
        et_arch a, b;
        char *err = NULL;
        et_arch_sample(s, &rng, &a);
        cr_assert_eq(et_arch_validate(s, &a, &err), 0, "sampled arch invalid: %s", err);
        cr_assert_gt(et_arch_format(s, &a, a_text, sizeof a_text), 0);
        cr_assert_eq(et_arch_parse(s, a_text, &b, &err), 0, "%s: %s", a_text, err);
        cr_assert_gt(et_arch_format(s, &b, b_text, sizeof b_text), 0);
        cr_assert_str_eq(a_text, b_text);
        cr_assert_eq(et_arch_hash(s, &a), et_arch_hash(s, &b));
    }
}

Test(arch, round_trip_10000_sampled)
{
    et_space e = tu_space(enc_space), t = tu_space(s2s_space);
    round_trips(&e, 10000, 1);
    round_trips(&t, 10000, 2);
}

Test(arch, hash_is_stable)
{
    et_space s = tu_space(enc_space);
    et_arch a;
    char *err = NULL;
    const char *text = "enc(E=64,L=2)[ffn=128,heads=2,attn=softmax,block=standard,act=gelu]"
                       "[ffn=512,heads=4,attn=performer(features=64),block=identity,act=relu]";
    cr_assert_eq(et_arch_parse(&s, text, &a, &err), 0, "%s", err);
    /* FNV-1a 64 of the canonical text: pinned so stored results keep their keys */
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const char *c = text; *c; c++)
        h = (h ^ (unsigned char)*c) * UINT64_C(0x100000001b3);
    cr_assert_eq(et_arch_hash(&s, &a), h);
    cr_assert_eq(et_arch_hash(&s, &a), UINT64_C(0x0f65e91d089b1d6b), "hash %016llx",
                 (unsigned long long)et_arch_hash(&s, &a));
}

static void parse_fails(const et_space *s, const char *text, const char *msg)
{
    et_arch a;
    char *err = NULL;
    cr_assert_neq(et_arch_parse(s, text, &a, &err), 0, "accepted %s", text);
    cr_assert_str_eq(err, msg);
    free(err);
}

Test(arch, parse_and_validation_errors)
{
    et_space s = tu_space(enc_space), t = tu_space(s2s_space);
    parse_fails(&s, "enc(E=64,L=2)[ffn=128,heads=2,attn=softmax,block=standard,act=gelu]",
                "arch text, offset 67: expected '[ffn=' (near '')");
    parse_fails(&s, "enc(E=65,L=1)[ffn=128,heads=2,attn=softmax,block=standard,act=gelu]",
                "encoder embed_dim 65 is not one of the space's choices (64, 96, 128)");
    parse_fails(&s, "enc(E=64,L=2)[ffn=128,heads=2,attn=softmax,block=standard,act=gelu]"
                    "[ffn=100,heads=2,attn=softmax,block=standard,act=gelu]",
                "encoder layer 1: ffn_dim 100 is not one of the space's choices (128, 256, 512)");
    parse_fails(&s, "enc(E=64,L=2)[ffn=128,heads=2,attn=linear,block=standard,act=gelu]",
                "arch text, offset 35: not an attention operator of this space (near 'linear,block=standar')");
    parse_fails(&s, "enc(E=64,L=2)[ffn=128,heads=2,attn=softmax,block=standard,act=gelu]x",
                "arch text, offset 67: expected '[ffn=' (near 'x')");
    parse_fails(&t, "enc(E=512,L=1)[ffn=1024,heads=4,attn=softmax,block=standard,act=gelu];"
                    "dec(E=512,L=1)[ffn=1024,heads=4,attn=softmax,block=standard,act=gelu,xheads=4,"
                    "xattn=softmax,connect=2]",
                "decoder layer 0: connect 2 attends to more encoder layers than the 1 there are");
}

static int inside(const et_space *s, const et_arch *a)
{
    char *err = NULL;
    int rc = et_arch_validate(s, a, &err);
    free(err);
    return rc == 0;
}

Test(arch, mutation_and_crossover_stay_inside)
{
    et_space t = tu_space(s2s_space);
    et_rng rng = et_rng_from_seed(3);
    et_arch pop[16];
    for (int i = 0; i < 16; i++)
        et_arch_sample(&t, &rng, &pop[i]);
    int changed = 0;
    for (int i = 0; i < 5000; i++) {
        et_arch child;
        const et_arch *a = &pop[et_rng_below(&rng, 16)], *b = &pop[et_rng_below(&rng, 16)];
        et_arch_mutate(&t, &rng, a, 0.3, &child);
        cr_assert(inside(&t, &child));
        changed += et_arch_hash(&t, &child) != et_arch_hash(&t, a);
        et_arch_crossover(&t, &rng, a, b, 0.5, &child);
        cr_assert(inside(&t, &child));
        pop[i % 16] = child;
    }
    cr_assert_gt(changed, 4000, "mutation with p=0.3 should nearly always change something");
}

Test(arch, mutation_p0_and_crossover_identity)
{
    et_space s = tu_space(enc_space);
    et_rng rng = et_rng_from_seed(5);
    et_arch a, b, c;
    et_arch_sample(&s, &rng, &a);
    et_arch_sample(&s, &rng, &b);
    et_arch_mutate(&s, &rng, &a, 0.0, &c);
    cr_assert_eq(memcmp(&a, &c, sizeof a), 0);
    et_arch_crossover(&s, &rng, &a, &b, 1.0, &c);
    cr_assert_eq(memcmp(&a, &c, sizeof a), 0);
    et_arch_crossover(&s, &rng, &a, &b, 0.0, &c);
    cr_assert_eq(memcmp(&b, &c, sizeof b), 0);
}

Test(arch, sampling_is_seeded)
{
    et_space s = tu_space(enc_space);
    et_rng r1 = et_rng_from_seed(11), r2 = et_rng_from_seed(11), r3 = et_rng_from_seed(12);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        et_arch a, b, c;
        et_arch_sample(&s, &r1, &a);
        et_arch_sample(&s, &r2, &b);
        et_arch_sample(&s, &r3, &c);
        cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
        differ += memcmp(&a, &c, sizeof a) != 0;
    }
    cr_assert_gt(differ, 90);
}

Test(arch, features_hand_computed)
{
    et_space s = tu_space(enc_space);
    et_arch a;
    char *err = NULL;
    cr_assert_eq(et_arch_parse(&s,
                               "enc(E=64,L=2)[ffn=128,heads=2,attn=softmax,block=standard,act=gelu]"
                               "[ffn=512,heads=4,attn=performer(features=64),block=identity,act=relu]",
                               &a, &err), 0, "%s", err);
    cr_assert_eq(et_arch_feature_count(&s), 5 + 5 * 6);
    float f[256];
    et_arch_features(&s, &a, f);
    const float want[] = {64.f / 128, 2.f / 6, (128 + 512) / 2.f / 512, 3.f / 4, (0 + 1) / 2.f,
                          128.f / 512, 2.f / 4, 1.f / 3, 1.f / 4, 2.f / 4,
                          1.f, 1.f, 3.f / 3, 4.f / 4, 1.f / 4,
                          0, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_float_eq(f[i], want[i], 1e-6, "feature %zu (%s): %g != %g", i,
                           et_arch_feature_name(&s, (int32_t)i), f[i], want[i]);
    cr_assert_str_eq(et_arch_feature_name(&s, 5), "enc0_ffn");

    et_space t = tu_space(s2s_space);
    cr_assert_eq(et_arch_feature_count(&t), 10 + 5 * 3 + 8 * 6);
    cr_assert_eq(et_arch_parse(&t,
                               "enc(E=512,L=2)[ffn=1024,heads=4,attn=softmax,block=standard,act=gelu]"
                               "[ffn=3072,heads=8,attn=softmax,block=standard,act=gelu];"
                               "dec(E=640,L=1)[ffn=2048,heads=8,attn=linear,block=standard,act=gelu,"
                               "xheads=4,xattn=cosformer,connect=2]",
                               &a, &err), 0, "%s", err);
    et_arch_features(&t, &a, f);
    const float hat[] = {512.f / 640, 2.f / 3, 2048.f / 3072, 6.f / 8,
                         1.f, 1.f / 6, 2048.f / 3072, 1.f, 4.f / 8, 2.f / 3};
    for (size_t i = 0; i < 10; i++)
        cr_assert_float_eq(f[i], hat[i], 1e-6, "HAT feature %zu: %g != %g", i, f[i], hat[i]);
}

Test(arch, largest_and_smallest)
{
    et_space t = tu_space(s2s_space);
    et_arch a;
    char buf[16384];
    et_arch_largest(&t, &a);
    cr_assert(inside(&t, &a));
    cr_assert_eq(a.enc.layers, 3);
    cr_assert_eq(a.dec.layers, 6);
    cr_assert_eq(a.dec.layer[5].ffn_dim, 3072);
    et_arch_smallest(&t, &a);
    cr_assert(inside(&t, &a));
    et_arch_format(&t, &a, buf, sizeof buf);
    cr_assert_str_eq(buf, "enc(E=512,L=1)[ffn=1024,heads=4,attn=softmax,block=standard,act=gelu];"
                          "dec(E=512,L=1)[ffn=1024,heads=4,attn=softmax,block=standard,act=gelu,"
                          "xheads=4,xattn=softmax,connect=1]");
}
