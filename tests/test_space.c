/* Search spaces: lists and ranges, defaults, every [space] error, and exact
 * space sizes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "inifile.h"
#include "space.h"

static int space_from(const char *body, et_space *s, char **err)
{
    et_config cfg;
    char text[4096];
    snprintf(text, sizeof text, "[space]\n%s", body);
    cr_assert_eq(et_config_parse(text, "s.ini", &cfg, err), 0, "%s", *err);
    int rc = et_space_from_section(&cfg.sections[0], s, err);
    et_config_free(&cfg);
    return rc;
}

#define ENC "encoder_embed_dim = 64, 96\nencoder_layers = 2..4\nencoder_ffn_dim = 128, 256\nencoder_heads = 2, 4\n"

Test(space, lists_ranges_defaults)
{
    et_space s;
    char *err = NULL;
    cr_assert_eq(space_from(ENC "encoder_attention = softmax, performer(features = 64, eps=1e-4)\n", &s, &err), 0, "%s", err);
    cr_assert_eq(s.kind, ET_MODEL_KIND_ENCODER);
    cr_assert_eq(s.enc.layers.n, 3);
    cr_assert_eq(s.enc.layers.v[2], 4);
    cr_assert_str_eq(s.enc.attention.v[1], "performer(features=64,eps=1e-4)");
    cr_assert_eq(s.enc.block.n, 1);
    cr_assert_eq(s.enc.block.v[0], ET_BLOCK_STANDARD);
    cr_assert_eq(s.enc.activation.v[0], ET_ACTIVATION_GELU);
    cr_assert_eq(s.heads_rule, ET_HEADS_RULE_HEAD_DIM);
    cr_assert_eq(s.head_dim, 64);
    cr_assert_eq(s.norm, ET_NORM_PRE);
}

static void expect_err(const char *body, const char *msg)
{
    et_space s;
    char *err = NULL;
    cr_assert_neq(space_from(body, &s, &err), 0, "no error for %s", body);
    cr_assert_str_eq(err, msg);
    free(err);
}

Test(space, errors)
{
    expect_err("encoder_embed_dim = 64\nencoder_layers = 2\nencoder_ffn_dim = 128, x\nencoder_heads = 2\n",
               "s.ini:4: [space] encoder_ffn_dim: 'x' is not a positive integer");
    expect_err("encoder_embed_dim = 64\nencoder_layers = 4..2\nencoder_ffn_dim = 1\nencoder_heads = 1\n",
               "s.ini:3: [space] encoder_layers: '4..' is not a range of positive integers LO..HI");
    expect_err(ENC "encoder_block = standard, wide\n",
               "s.ini:6: [space] encoder_block: 'wide' is not one of standard, attention-only, ffn-only, identity, conv");
    expect_err("encoder_embed_dim = 64\nencoder_layers = 2\nencoder_ffn_dim = 64, 64\nencoder_heads = 1\n",
               "s.ini:4: [space] encoder_ffn_dim: value 64 is listed twice");
    expect_err("encoder_embed_dim = 64\nencoder_layers = 2\nencoder_heads = 1\n",
               "s.ini:1: [space] encoder_ffn_dim: is required when the stack has an embed_dim");
    expect_err(ENC "encoder_atention = softmax\n",
               "s.ini:6: [space] unknown key 'encoder_atention' (did you mean 'encoder_attention'?)");
    expect_err(ENC "decoder_connect = 1\n", "s.ini:6: [space] decoder_connect: given without the stack's embed_dim");
    expect_err(ENC "encoder_attention = Soft max\n",
               "s.ini:6: [space] encoder_attention: 'Softmax' is not an operator name or name(key=value,...)");
    expect_err("decoder_embed_dim = 64\ndecoder_layers = 2\ndecoder_ffn_dim = 64\ndecoder_heads = 1\ndecoder_cross_heads = 1\n",
               "s.ini:6: [space] decoder_cross_heads: needs an encoder (set encoder_embed_dim)");
    expect_err(ENC "decoder_embed_dim = 64\ndecoder_layers = 2\ndecoder_ffn_dim = 64\ndecoder_heads = 1\ndecoder_connect = 1, 4\n",
               "s.ini:10: [space] decoder_connect: En-De Connect is 1, 2 or 3 (the last 1, 2 or 3 encoder layers)");
    expect_err("head_dim = 3\n", "s.ini:1: [space] has neither encoder_embed_dim nor decoder_embed_dim");
}

Test(space, qkv_divisibility)
{
    expect_err("encoder_embed_dim = 64\nencoder_layers = 2\nencoder_ffn_dim = 64\nencoder_heads = 2, 3\nqkv_dim = 100\n",
               "s.ini:5: [space] encoder_heads: qkv_dim 100 is not divisible by 3 heads");
    expect_err("encoder_embed_dim = 64\nencoder_layers = 2\nencoder_ffn_dim = 64\nencoder_heads = 2\nqkv_dim = 128\nhead_dim = 32\n",
               "s.ini:6: [space] qkv_dim: set head_dim or qkv_dim, not both");
}

Test(space, exact_sizes)
{
    et_space s;
    char *err = NULL, buf[256];
    cr_assert_eq(space_from(ENC "encoder_attention = softmax, cosformer\n", &s, &err), 0, "%s", err);
    /* per layer 2 ffn x 2 heads x 2 attention = 8; E 2; L 2..4 */
    cr_assert_gt(et_space_count(&s, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "9344");
    /* HAT's WMT'14 space: enc L 6, dec L 1..6, per enc layer 3 ffn x 2 heads,
     * per dec layer 3 ffn x 2 heads x 2 en-de heads x 3 connect; E 2 x 2 */
    cr_assert_eq(space_from("encoder_embed_dim = 640, 512\nencoder_layers = 6\nencoder_ffn_dim = 3072, 2048, 1024\n"
                            "encoder_heads = 8, 4\ndecoder_embed_dim = 640, 512\ndecoder_layers = 1..6\n"
                            "decoder_ffn_dim = 3072, 2048, 1024\ndecoder_heads = 8, 4\ndecoder_connect = 1, 2, 3\n"
                            "qkv_dim = 512\n", &s, &err), 0, "%s", err);
    cr_assert_eq(s.kind, ET_MODEL_KIND_SEQ2SEQ);
    cr_assert_gt(et_space_count(&s, buf, sizeof buf), 0);
    /* 4 * 6^6 * sum_{d=1..6} 36^d = 4 * 46656 * 2238976548 */
    cr_assert_str_eq(buf, "417846678672384");
}

Test(space, huge_sizes_are_exact)
{
    et_space s;
    char *err = NULL, buf[700];
    cr_assert_eq(space_from("encoder_embed_dim = 1..32\nencoder_layers = 32\nencoder_ffn_dim = 1..32\n"
                            "encoder_heads = 1..32\n", &s, &err), 0, "%s", err);
    cr_assert_gt(et_space_count(&s, buf, sizeof buf), 0);
    /* 32 * (32*32)^32 = 2^5 * 2^320 = 2^325 */
    cr_assert_str_eq(buf, "68351585149469122636640694597425667667286544715412888638305331450311031224980497600734786781970432");
}

Test(space, canonical_text_round_trips)
{
    et_space a, b;
    char *err = NULL, t1[8192], t2[8192];
    cr_assert_eq(space_from(ENC "encoder_attention = softmax, performer(features=64)\n"
                                "decoder_embed_dim = 32\ndecoder_layers = 1..2\ndecoder_ffn_dim = 64\n"
                                "decoder_heads = 2\ndecoder_connect = 1, 2\nnorm = post\n",
                            &a, &err), 0, "%s", err);
    cr_assert_gt(et_space_format(&a, t1, sizeof t1), 0);
    cr_assert_eq(space_from(t1, &b, &err), 0, "%s\n%s", err, t1);
    cr_assert_gt(et_space_format(&b, t2, sizeof t2), 0);
    cr_assert_str_eq(t1, t2);
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
    cr_assert_not_null(strstr(t1, "encoder_attention = softmax, performer(features=64)\n"));
    cr_assert_not_null(strstr(t1, "norm = post\n"));
}
