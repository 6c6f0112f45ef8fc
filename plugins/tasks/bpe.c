/* Byte-pair encoding (bpe.h): the subword-nmt learner with incremental pair
 * statistics, its word-by-word application, removal, and the merges cache.
 *
 * The learner keeps, for every symbol pair ever seen, its weighted count
 * and a list of the words that contain it, and a max-heap of pairs. A merge
 * visits only the words on its pair's list: each such word takes its old
 * pairs' counts away, is rewritten, and adds its new pairs' counts back, so
 * the statistics stay exact without a full recount. */
#include "bpe.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <etnas/rng.h>

#define BPE_FAIL(code, ...) (*err = host->errorf(__VA_ARGS__), (code))
#define EOW_LEN (sizeof BPE_END_OF_WORD - 1)
#define PAIR_EMPTY UINT64_MAX

/* Learning stops below this count: a pair seen once compresses nothing. */
#define BPE_MIN_FREQUENCY 2

/* First line of a cache file; the version changes with the format. */
#define CACHE_MAGIC "#etnas-bpe-cache 1"

/* ------------------------------------------------------------ pair map */

static uint64_t pair_key(int32_t left, int32_t right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

static uint32_t pair_probe(const bpe_pair_map *p, uint64_t key)
{
    uint32_t mask = p->nslots - 1, i = (uint32_t)et_rng_mix64(key) & mask;
    while (p->key[i] != PAIR_EMPTY && p->key[i] != key)
        i = (i + 1) & mask;
    return i;
}

static int32_t pair_get(const bpe_pair_map *p, uint64_t key)
{
    if (!p->nslots)
        return -1;
    uint32_t i = pair_probe(p, key);
    return p->key[i] == key ? p->value[i] : -1;
}

static void pair_map_free(bpe_pair_map *p)
{
    free(p->key);
    free(p->value);
    memset(p, 0, sizeof *p);
}

static int pair_set(bpe_pair_map *p, uint64_t key, int32_t value)
{
    if ((uint64_t)(p->n + 1) * 2 > p->nslots) {
        bpe_pair_map g = {0};
        g.nslots = p->nslots ? p->nslots * 2 : 256;
        g.key = malloc(sizeof *g.key * g.nslots);
        g.value = malloc(sizeof *g.value * g.nslots);
        if (!g.key || !g.value) {
            pair_map_free(&g);
            return ET_STATUS_ERR_NOMEM;
        }
        for (uint32_t i = 0; i < g.nslots; i++)
            g.key[i] = PAIR_EMPTY;
        for (uint32_t i = 0; i < p->nslots; i++)
            if (p->key[i] != PAIR_EMPTY) {
                uint32_t j = pair_probe(&g, p->key[i]);
                g.key[j] = p->key[i];
                g.value[j] = p->value[i];
            }
        g.n = p->n;
        pair_map_free(p);
        *p = g;
    }
    uint32_t i = pair_probe(p, key);
    if (p->key[i] != key) {
        p->key[i] = key;
        p->n++;
    }
    p->value[i] = value;
    return 0;
}

/* ------------------------------------------------------------ model */

void bpe_init(bpe_model *m)
{
    memset(m, 0, sizeof *m);
    vocab_init(&m->symbols);
    vocab_init(&m->memo);
}

void bpe_free(bpe_model *m)
{
    vocab_free(&m->symbols);
    free(m->merges);
    pair_map_free(&m->rank);
    vocab_free(&m->memo);
    free(m->memo_at);
    free(m->memo_cut);
    free(m->work_id);
    free(m->work_end);
    bpe_init(m);
}

/* Bytes of the UTF-8 character at s (n > 0 bytes left). Malformed input
 * still splits deterministically: a stray continuation byte starts a
 * character of its own. */
static size_t char_len(const unsigned char *s, size_t n)
{
    size_t k = 1;
    while (k < n && k < 4 && (s[k] & 0xC0) == 0x80)
        k++;
    return k;
}

/* Byte order of two symbols, shorter first on a common prefix. */
static int symbol_cmp(const vocab *v, int32_t a, int32_t b)
{
    uint32_t la = v->length[a], lb = v->length[b];
    int c = memcmp(vocab_token(v, a), vocab_token(v, b), la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* The symbol spelt by the n bytes at s, plus the end-of-word marker when
 * last; -1 when find_only and the symbol is unknown. */
static int symbol_of(vocab *v, const char *s, size_t n, int last, int find_only, int32_t *id)
{
    char small[4 + EOW_LEN];
    if (n > 4)
        return ET_STATUS_ERR_INTERNAL;
    memcpy(small, s, n);
    if (last) {
        memcpy(small + n, BPE_END_OF_WORD, EOW_LEN);
        n += EOW_LEN;
    }
    if (find_only) {
        *id = vocab_find(v, small, n);
        return 0;
    }
    return vocab_intern(v, small, n, id);
}

/* Intern left + right; *merged is its id. */
static int concat_symbol(vocab *v, int32_t left, int32_t right, char **tmp, size_t *tmp_cap,
                         int32_t *merged)
{
    size_t ll = v->length[left], lr = v->length[right];
    if (ll + lr > *tmp_cap) {
        size_t cap = *tmp_cap ? *tmp_cap : 64;
        while (cap < ll + lr)
            cap *= 2;
        char *p = realloc(*tmp, cap);
        if (!p)
            return ET_STATUS_ERR_NOMEM;
        *tmp = p;
        *tmp_cap = cap;
    }
    memcpy(*tmp, vocab_token(v, left), ll);
    memcpy(*tmp + ll, vocab_token(v, right), lr);
    return vocab_intern(v, *tmp, ll + lr, merged);
}

static int push_merge(bpe_model *m, int32_t left, int32_t right, int32_t merged)
{
    if (m->n_merges == m->cap_merges) {
        int32_t cap = m->cap_merges ? m->cap_merges * 2 : 256;
        bpe_merge *p = realloc(m->merges, sizeof *p * (size_t)cap);
        if (!p)
            return ET_STATUS_ERR_NOMEM;
        m->merges = p;
        m->cap_merges = cap;
    }
    if (pair_set(&m->rank, pair_key(left, right), m->n_merges))
        return ET_STATUS_ERR_NOMEM;
    m->merges[m->n_merges++] = (bpe_merge){left, right, merged};
    return 0;
}

int bpe_add_merge(bpe_model *m, const char *left, size_t left_len, const char *right,
                  size_t right_len)
{
    int32_t l, r, c;
    char *tmp = NULL;
    size_t cap = 0;
    int rc = vocab_intern(&m->symbols, left, left_len, &l);
    if (!rc)
        rc = vocab_intern(&m->symbols, right, right_len, &r);
    if (!rc)
        rc = concat_symbol(&m->symbols, l, r, &tmp, &cap, &c);
    free(tmp);
    return rc ? rc : push_merge(m, l, r, c);
}

int bpe_count_words(vocab *words, const char *line, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && bpe_is_space((unsigned char)line[i]))
            i++;
        size_t start = i;
        while (i < len && !bpe_is_space((unsigned char)line[i]))
            i++;
        if (i > start) {
            int32_t id;
            if (vocab_intern(words, line + start, i - start, &id))
                return ET_STATUS_ERR_NOMEM;
            words->count[id]++;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ learning */

typedef struct learner {
    vocab *sym;
    /* words: symbol sequences in one pool, rewritten in place as they shrink */
    int32_t nwords;
    int64_t *freq, *start;
    int32_t *len, *seq, *stamp;
    /* pairs */
    int32_t npairs, pair_cap;
    int32_t *left, *right, *last_word, *heap_pos;
    int64_t *count;
    bpe_pair_map ids;
    /* occurrence lists: word ids chained per pair, from head[pair] */
    int64_t *head;
    int32_t *occ_word;
    int64_t *occ_next;
    int64_t nocc, occ_cap;
    int32_t *heap; /* max-heap of pair ids by pair_above */
} learner;

static void learner_free(learner *L)
{
    free(L->freq);
    free(L->start);
    free(L->len);
    free(L->seq);
    free(L->stamp);
    free(L->left);
    free(L->right);
    free(L->head);
    free(L->last_word);
    free(L->heap_pos);
    free(L->count);
    pair_map_free(&L->ids);
    free(L->occ_word);
    free(L->occ_next);
    free(L->heap);
}

/* Pair p ranks above q: higher count, then greater left, then right. */
static int pair_above(const learner *L, int32_t p, int32_t q)
{
    if (L->count[p] != L->count[q])
        return L->count[p] > L->count[q];
    int c = symbol_cmp(L->sym, L->left[p], L->left[q]);
    if (!c)
        c = symbol_cmp(L->sym, L->right[p], L->right[q]);
    return c > 0;
}

static void heap_place(learner *L, int32_t i, int32_t p)
{
    L->heap[i] = p;
    L->heap_pos[p] = i;
}

static void heap_fix(learner *L, int32_t p)
{
    int32_t i = L->heap_pos[p];
    while (i > 0 && pair_above(L, p, L->heap[(i - 1) / 2])) {
        heap_place(L, i, L->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= L->npairs)
            break;
        if (c + 1 < L->npairs && pair_above(L, L->heap[c + 1], L->heap[c]))
            c++;
        if (!pair_above(L, L->heap[c], p))
            break;
        heap_place(L, i, L->heap[c]);
        i = c;
    }
    heap_place(L, i, p);
}

static int grow_pairs(learner *L)
{
    int32_t cap = L->pair_cap ? L->pair_cap * 2 : 1024;
#define GROW(field)                                                     \
    do {                                                                \
        void *g = realloc(L->field, sizeof *L->field * (size_t)cap);    \
        if (!g)                                                         \
            return ET_STATUS_ERR_NOMEM;                                 \
        L->field = g;                                                   \
    } while (0)
    GROW(left);
    GROW(right);
    GROW(head);
    GROW(last_word);
    GROW(heap_pos);
    GROW(count);
    GROW(heap);
#undef GROW
    L->pair_cap = cap;
    return 0;
}

/* The id of pair (a, b), created with count 0 at the bottom of the heap. */
static int pair_id(learner *L, int32_t a, int32_t b, int32_t *id)
{
    uint64_t key = pair_key(a, b);
    int32_t p = pair_get(&L->ids, key);
    if (p < 0) {
        if (L->npairs == L->pair_cap && grow_pairs(L))
            return ET_STATUS_ERR_NOMEM;
        p = L->npairs;
        if (pair_set(&L->ids, key, p))
            return ET_STATUS_ERR_NOMEM;
        L->left[p] = a;
        L->right[p] = b;
        L->head[p] = -1;
        L->last_word[p] = -1;
        L->count[p] = 0;
        heap_place(L, L->npairs++, p);
        heap_fix(L, p);
    }
    *id = p;
    return 0;
}

/* Counts change one at a time and the heap is fixed at each: fixing a batch
 * of changed keys afterwards, one by one, can leave the heap out of order. */
static void add_count(learner *L, int32_t p, int64_t delta)
{
    L->count[p] += delta;
    heap_fix(L, p);
}

/* Note that word w contains pair p (once per word in a row). */
static int add_occurrence(learner *L, int32_t p, int32_t w)
{
    if (L->last_word[p] == w)
        return 0;
    if (L->nocc == L->occ_cap) {
        int64_t cap = L->occ_cap ? L->occ_cap * 2 : 4096;
        int32_t *word = realloc(L->occ_word, sizeof *word * (size_t)cap);
        if (!word)
            return ET_STATUS_ERR_NOMEM;
        L->occ_word = word;
        int64_t *next = realloc(L->occ_next, sizeof *next * (size_t)cap);
        if (!next)
            return ET_STATUS_ERR_NOMEM;
        L->occ_next = next;
        L->occ_cap = cap;
    }
    L->occ_word[L->nocc] = w;
    L->occ_next[L->nocc] = L->head[p];
    L->head[p] = L->nocc;
    L->nocc++;
    L->last_word[p] = w;
    return 0;
}

/* Add the pairs of word w with weight sign * freq; new pairs that contain
 * symbol `fresh` (or all pairs, when fresh < 0) record the word. */
static int count_word(learner *L, int32_t w, int64_t sign, int32_t fresh)
{
    const int32_t *s = L->seq + L->start[w];
    for (int32_t i = 0; i + 1 < L->len[w]; i++) {
        int32_t p;
        if (pair_id(L, s[i], s[i + 1], &p))
            return ET_STATUS_ERR_NOMEM;
        add_count(L, p, sign * L->freq[w]);
        if (sign > 0 && (fresh < 0 || s[i] == fresh || s[i + 1] == fresh) &&
            add_occurrence(L, p, w))
            return ET_STATUS_ERR_NOMEM;
    }
    return 0;
}

static int learner_init(learner *L, const vocab *words, vocab *sym)
{
    memset(L, 0, sizeof *L);
    L->sym = sym;
    int64_t total = 0;
    for (int32_t w = 0; w < words->n; w++)
        total += words->length[w];
    size_t nw = words->n > 0 ? (size_t)words->n : 1;
    L->freq = malloc(sizeof *L->freq * nw);
    L->start = malloc(sizeof *L->start * nw);
    L->len = malloc(sizeof *L->len * nw);
    L->stamp = malloc(sizeof *L->stamp * nw);
    L->seq = malloc(sizeof *L->seq * (total > 0 ? (size_t)total : 1));
    if (!L->freq || !L->start || !L->len || !L->stamp || !L->seq)
        return ET_STATUS_ERR_NOMEM;
    int64_t at = 0;
    for (int32_t w = 0; w < words->n; w++) {
        if (words->count[w] <= 0)
            continue;
        const char *t = vocab_token(words, w);
        size_t n = words->length[w];
        int32_t k = L->nwords++;
        L->freq[k] = words->count[w];
        L->start[k] = at;
        L->stamp[k] = -1;
        for (size_t i = 0; i < n;) {
            size_t c = char_len((const unsigned char *)t + i, n - i);
            if (symbol_of(sym, t + i, c, i + c == n, 0, &L->seq[at++]))
                return ET_STATUS_ERR_NOMEM;
            i += c;
        }
        L->len[k] = (int32_t)(at - L->start[k]);
        if (count_word(L, k, 1, -1))
            return ET_STATUS_ERR_NOMEM;
    }
    return 0;
}

static int word_has(const learner *L, int32_t w, int32_t a, int32_t b)
{
    const int32_t *s = L->seq + L->start[w];
    for (int32_t i = 0; i + 1 < L->len[w]; i++)
        if (s[i] == a && s[i + 1] == b)
            return 1;
    return 0;
}

/* Rewrite word w with every (a, b), left to right, replaced by c. */
static void rewrite_word(learner *L, int32_t w, int32_t a, int32_t b, int32_t c)
{
    int32_t *s = L->seq + L->start[w], n = L->len[w], j = 0;
    for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[j++] = c;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    L->len[w] = j;
}

int bpe_learn(const vocab *words, int32_t merges, bpe_model *m)
{
    learner L;
    int rc = learner_init(&L, words, &m->symbols);
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (int32_t k = 0; !rc && k < merges && L.npairs > 0; k++) {
        int32_t best = L.heap[0];
        if (L.count[best] < BPE_MIN_FREQUENCY)
            break;
        int32_t a = L.left[best], b = L.right[best], c;
        if ((rc = concat_symbol(L.sym, a, b, &tmp, &tmp_cap, &c)) ||
            (rc = push_merge(m, a, b, c)))
            break;
        for (int64_t o = L.head[best]; o >= 0 && !rc; o = L.occ_next[o]) {
            int32_t w = L.occ_word[o];
            /* lists keep words whose pair a later merge took away */
            if (L.stamp[w] == k || !word_has(&L, w, a, b))
                continue;
            L.stamp[w] = k;
            if (!(rc = count_word(&L, w, -1, -1))) {
                rewrite_word(&L, w, a, b, c);
                rc = count_word(&L, w, 1, c);
            }
        }
    }
    free(tmp);
    learner_free(&L);
    return rc;
}

/* ------------------------------------------------------------ applying */

/* Piece ends of the n-byte word w into m->work_end[0 .. *pieces), as
 * subword-nmt applies merges: the adjacent pair with the earliest merge is
 * joined everywhere in the word, left to right, until no pair has a merge. */
static int segment(bpe_model *m, const char *w, size_t n, int32_t *pieces)
{
    if (n > m->work_cap) {
        int32_t *id = realloc(m->work_id, sizeof *id * n);
        if (!id)
            return ET_STATUS_ERR_NOMEM;
        m->work_id = id;
        uint32_t *end = realloc(m->work_end, sizeof *end * n);
        if (!end)
            return ET_STATUS_ERR_NOMEM;
        m->work_end = end;
        m->work_cap = n;
    }
    int32_t *id = m->work_id, k = 0;
    uint32_t *end = m->work_end;
    for (size_t i = 0; i < n;) {
        size_t c = char_len((const unsigned char *)w + i, n - i);
        symbol_of(&m->symbols, w + i, c, i + c == n, 1, &id[k]);
        i += c;
        end[k++] = (uint32_t)i;
    }
    while (k > 1) {
        int32_t best = INT32_MAX;
        for (int32_t j = 0; j + 1 < k; j++) {
            if (id[j] < 0 || id[j + 1] < 0)
                continue;
            int32_t r = pair_get(&m->rank, pair_key(id[j], id[j + 1]));
            if (r >= 0 && r < best)
                best = r;
        }
        if (best == INT32_MAX)
            break;
        bpe_merge mg = m->merges[best];
        int32_t out = 0;
        for (int32_t j = 0; j < k;) {
            if (j + 1 < k && id[j] == mg.left && id[j + 1] == mg.right) {
                id[out] = mg.merged;
                end[out++] = end[j + 1];
                j += 2;
            } else {
                id[out] = id[j];
                end[out++] = end[j++];
            }
        }
        k = out;
    }
    *pieces = k;
    return 0;
}

/* The memo entry of word w: its piece ends, computed once. */
static int word_cuts(bpe_model *m, const char *w, size_t n, const uint32_t **cuts,
                     int32_t *pieces)
{
    int32_t id = vocab_find(&m->memo, w, n);
    if (id < 0) {
        int32_t k;
        if (segment(m, w, n, &k))
            return ET_STATUS_ERR_NOMEM;
        if (m->memo_cuts + k > m->memo_cut_cap) {
            int64_t cap = m->memo_cut_cap ? m->memo_cut_cap : 4096;
            while (cap < m->memo_cuts + k)
                cap *= 2;
            uint32_t *p = realloc(m->memo_cut, sizeof *p * (size_t)cap);
            if (!p)
                return ET_STATUS_ERR_NOMEM;
            m->memo_cut = p;
            m->memo_cut_cap = cap;
        }
        if (m->memo.n + 2 > m->memo_at_cap) {
            int64_t cap = m->memo_at_cap ? m->memo_at_cap * 2 : 1024;
            int64_t *p = realloc(m->memo_at, sizeof *p * (size_t)cap);
            if (!p)
                return ET_STATUS_ERR_NOMEM;
            m->memo_at = p;
            m->memo_at_cap = cap;
        }
        if (vocab_intern(&m->memo, w, n, &id))
            return ET_STATUS_ERR_NOMEM;
        memcpy(m->memo_cut + m->memo_cuts, m->work_end, sizeof *m->work_end * (size_t)k);
        m->memo_at[id] = m->memo_cuts;
        m->memo_cuts += k;
        m->memo_at[id + 1] = m->memo_cuts;
    }
    *cuts = m->memo_cut + m->memo_at[id];
    *pieces = (int32_t)(m->memo_at[id + 1] - m->memo_at[id]);
    return 0;
}

int64_t bpe_apply_line(bpe_model *m, const char *line, size_t len, char **buf, size_t *cap)
{
    size_t out = 0, i = 0;
    for (;;) {
        while (i < len && bpe_is_space((unsigned char)line[i]))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && !bpe_is_space((unsigned char)line[i]))
            i++;
        const uint32_t *cuts;
        int32_t pieces;
        if (word_cuts(m, line + start, i - start, &cuts, &pieces))
            return ET_STATUS_ERR_NOMEM;
        /* the word, "@@ " after each piece but the last, a separator */
        size_t need = out + (i - start) + 3 * (size_t)pieces + 2;
        if (need > *cap) {
            size_t c = *cap ? *cap : 256;
            while (c < need)
                c *= 2;
            char *p = realloc(*buf, c);
            if (!p)
                return ET_STATUS_ERR_NOMEM;
            *buf = p;
            *cap = c;
        }
        if (out)
            (*buf)[out++] = ' ';
        uint32_t from = 0;
        for (int32_t k = 0; k < pieces; k++) {
            memcpy(*buf + out, line + start + from, cuts[k] - from);
            out += cuts[k] - from;
            from = cuts[k];
            if (k + 1 < pieces) {
                memcpy(*buf + out, "@@ ", 3);
                out += 3;
            }
        }
    }
    if (!*cap) {
        char *p = malloc(1);
        if (!p)
            return ET_STATUS_ERR_NOMEM;
        *buf = p;
        *cap = 1;
    }
    (*buf)[out] = 0;
    return (int64_t)out;
}

size_t bpe_remove(char *line)
{
    size_t r = 0, w = 0;
    while (line[r]) {
        /* "@@" then a space or the end is a join; any other '@' is text */
        if (line[r] == '@' && line[r + 1] == '@' && (line[r + 2] == ' ' || !line[r + 2])) {
            r += line[r + 2] ? 3 : 2;
            continue;
        }
        line[w++] = line[r++];
    }
    line[w] = 0;
    return w;
}

/* ------------------------------------------------------------ the cache */

static uint64_t body_checksum(const bpe_model *m)
{
    uint64_t h = VOCAB_FNV_OFFSET;
    for (int32_t i = 0; i < m->n_merges; i++) {
        const bpe_merge *g = &m->merges[i];
        h = vocab_fnv1a(h, vocab_token(&m->symbols, g->left), m->symbols.length[g->left]);
        h = vocab_fnv1a(h, " ", 1);
        h = vocab_fnv1a(h, vocab_token(&m->symbols, g->right), m->symbols.length[g->right]);
        h = vocab_fnv1a(h, "\n", 1);
    }
    return h;
}

static void header_line(char *buf, size_t size, uint64_t key, int32_t merges, int32_t count)
{
    snprintf(buf, size, CACHE_MAGIC " key=%016" PRIx64 " merges=%" PRId32 " count=%" PRId32,
             key, merges, count);
}

/* The whole file at path, NUL-terminated, into *text (n bytes). 0, or
 * errno (ENOMEM when it does not fit in memory). */
static int slurp(const char *path, char **text, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno;
    char *t = NULL;
    size_t len = 0, cap = 0, got;
    int rc = 0;
    do {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *p = realloc(t, cap);
            if (!p) {
                rc = ENOMEM;
                break;
            }
            t = p;
        }
        got = fread(t + len, 1, 4096, f);
        len += got;
    } while (got == 4096);
    if (!rc && ferror(f))
        rc = EIO;
    fclose(f);
    if (rc) {
        free(t);
        return rc;
    }
    t[len] = 0;
    *text = t;
    *n = len;
    return 0;
}

/* Check a cache file's text: NULL when it holds merges for key and merges,
 * with *body (its merge lines) and *count set; otherwise why not. */
static char *check_cache(const et_host *host, char *text, size_t n, uint64_t key, int32_t merges,
                         char **body, int32_t *count)
{
    if (memchr(text, 0, n))
        return host->errorf("holds a NUL byte");
    char *nl = strchr(text, '\n');
    size_t ml = strlen(CACHE_MAGIC);
    if (!nl || strncmp(text, CACHE_MAGIC " ", ml + 1))
        return host->errorf("does not start with \"%s\"", CACHE_MAGIC);
    *nl = 0;
    uint64_t file_key;
    int32_t file_merges;
    char canonical[160];
    if (sscanf(text + ml, " key=%16" SCNx64 " merges=%" SCNd32 " count=%" SCNd32, &file_key,
               &file_merges, count) != 3)
        return host->errorf("has a malformed first line");
    header_line(canonical, sizeof canonical, file_key, file_merges, *count);
    if (strcmp(canonical, text) || *count < 0)
        return host->errorf("has a malformed first line");
    if (file_key != key || file_merges != merges)
        return host->errorf("was learned from other training data or for another merge count "
                            "(key %016" PRIx64 " merges %" PRId32 ", want %016" PRIx64
                            " merges %" PRId32 ")",
                            file_key, file_merges, key, merges);
    if (*count > merges)
        return host->errorf("holds %" PRId32 " merges, more than the %" PRId32 " asked for",
                            *count, merges);
    *body = nl + 1;
    char *p = *body;
    for (int32_t i = 0; i < *count; i++) {
        char *e = strchr(p, '\n'), *sp = e ? memchr(p, ' ', (size_t)(e - p)) : NULL;
        if (!e)
            return host->errorf("is truncated after %" PRId32 " of its %" PRId32 " merges", i,
                                *count);
        if (!sp || sp == p || sp + 1 == e || memchr(sp + 1, ' ', (size_t)(e - sp - 1)))
            return host->errorf("line %" PRId32 " is not \"LEFT RIGHT\"", i + 2);
        p = e + 1;
    }
    char trailer[64];
    snprintf(trailer, sizeof trailer, "#checksum %016" PRIx64 "\n",
             vocab_fnv1a(VOCAB_FNV_OFFSET, *body, (size_t)(p - *body)));
    if (strncmp(p, "#checksum ", 10))
        return host->errorf("is truncated: no checksum line after its %" PRId32 " merges", *count);
    if (strcmp(p, trailer))
        return host->errorf("does not match its checksum");
    return NULL;
}

/* A cache file into m: 1 when it was used, 0 when there is no file, -1 when
 * it is unusable (*why says why, malloc'd through the host). */
static int read_cache(const et_host *host, const char *path, uint64_t key, int32_t merges,
                      bpe_model *m, char **why)
{
    char *text = NULL, *body = NULL;
    size_t n = 0;
    int32_t count = 0;
    int e = slurp(path, &text, &n);
    if (e == ENOENT)
        return 0;
    if (e) {
        *why = host->errorf("cannot be read: %s", strerror(e));
        return -1;
    }
    if ((*why = check_cache(host, text, n, key, merges, &body, &count))) {
        free(text);
        return -1;
    }
    for (int32_t i = 0; i < count; i++) {
        char *nl = strchr(body, '\n'), *sp = memchr(body, ' ', (size_t)(nl - body));
        if (bpe_add_merge(m, body, (size_t)(sp - body), sp + 1, (size_t)(nl - sp - 1))) {
            *why = host->errorf("could not be loaded: out of memory");
            free(text);
            return -1;
        }
        body = nl + 1;
    }
    free(text);
    return 1;
}

/* m's merges into path through a temporary file, fsync'd, then renamed, so a
 * reader never sees half a file. 0, or -1 with *why. */
static int write_cache(const et_host *host, const char *path, uint64_t key, int32_t merges,
                       const bpe_model *m, char **why)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 8);
    if (!tmp) {
        *why = host->errorf("out of memory");
        return -1;
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        *why = host->errorf("cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        *why = host->errorf("cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    char head[160];
    header_line(head, sizeof head, key, merges, m->n_merges);
    fprintf(f, "%s\n", head);
    for (int32_t i = 0; i < m->n_merges; i++) {
        const bpe_merge *g = &m->merges[i];
        fprintf(f, "%s %s\n", vocab_token(&m->symbols, g->left),
                vocab_token(&m->symbols, g->right));
    }
    fprintf(f, "#checksum %016" PRIx64 "\n", body_checksum(m));
    /* mkstemp makes it private; a cache is as readable as the data */
    int bad = fchmod(fd, 0644) != 0 || fflush(f) != 0 || ferror(f) || fsync(fd) != 0;
    int saved = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    if (bad || rename(tmp, path) != 0) {
        *why = host->errorf("cannot write %s: %s", bad ? tmp : path,
                            strerror(bad ? saved : errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return vocab_fnv1a(h, b, 8);
}

/* Count the words of one file and hash its bytes. */
static int count_file(const et_host *host, const char *path, vocab *words, uint64_t *hash,
                      char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return BPE_FAIL(ET_STATUS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int64_t lineno = 0;
    int rc = 0;
    uint64_t h = VOCAB_FNV_OFFSET;
    errno = 0;
    while (!rc && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        h = vocab_fnv1a(h, line, (size_t)got);
        if (memchr(line, 0, (size_t)got))
            rc = BPE_FAIL(ET_STATUS_ERR_FORMAT, "%s:%" PRId64 ": holds a NUL byte", path, lineno);
        else if (bpe_count_words(words, line, (size_t)got))
            rc = BPE_FAIL(ET_STATUS_ERR_NOMEM, "%s:%" PRId64 ": out of memory", path, lineno);
    }
    if (!rc && ferror(f))
        rc = BPE_FAIL(ET_STATUS_ERR_IO, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    *hash = h;
    return rc;
}

int bpe_learn_files(const et_host *host, const char *const *paths, int npaths, int32_t merges,
                    const char *cache_path, bpe_model *m, bpe_source *source, char **err)
{
    vocab words;
    vocab_init(&words);
    uint64_t *hashes = malloc(sizeof *hashes * (size_t)(npaths > 0 ? npaths : 1));
    if (!hashes)
        return BPE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory for BPE");
    int rc = 0;
    for (int i = 0; i < npaths && !rc; i++)
        rc = count_file(host, paths[i], &words, &hashes[i], err);
    /* the key ignores file order: de-en and en-de share one cache */
    qsort(hashes, (size_t)npaths, sizeof *hashes, cmp_u64);
    uint64_t key = vocab_fnv1a(VOCAB_FNV_OFFSET, CACHE_MAGIC, strlen(CACHE_MAGIC));
    for (int i = 0; i < npaths; i++)
        key = fnv_u64(key, hashes[i]);
    key = fnv_u64(key, (uint64_t)merges);
    free(hashes);
    *source = BPE_SOURCE_LEARNED;
    if (!rc && cache_path) {
        char *why = NULL;
        int got = read_cache(host, cache_path, key, merges, m, &why);
        if (got == 1) {
            *source = BPE_SOURCE_CACHE;
            vocab_free(&words);
            return 0;
        }
        if (got < 0) {
            host->log(host->ctx, ET_LOG_LEVEL_WARN,
                      "translate: BPE cache %s %s; learning the merges again and rewriting it",
                      cache_path, why ? why : "is unusable");
            free(why);
            bpe_free(m);
            *source = BPE_SOURCE_REBUILT;
        }
    }
    if (!rc && bpe_learn(&words, merges, m))
        rc = BPE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory learning BPE");
    vocab_free(&words);
    if (!rc && cache_path) {
        char *why = NULL;
        if (write_cache(host, cache_path, key, merges, m, &why)) {
            host->log(host->ctx, ET_LOG_LEVEL_WARN,
                      "translate: BPE cache %s not written (%s); the merges stay in memory only",
                      cache_path, why ? why : "unknown error");
            free(why);
        }
    }
    return rc;
}
