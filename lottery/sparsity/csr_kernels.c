/* CSR kernels for the sparse path of low-density Linear layers (lottery/sparsity/execution.py, built by kernels.py).
 *
 * Layout: activations are transposed and padded, one row of `ld` floats per feature (ld a multiple of 16, of 64
 * for the W=64 variants), so that each survivor W[i, j] touches one contiguous row of the input: the product is a
 * gather of rows, which the hardware prefetcher does not foresee. Prefetching the row AHEAD survivors on made the
 * forward of LeNet-300-100's 784x300 layer at 3.6% density 5x faster here (105 -> 21 us at batch 60). The batch
 * is worked in blocks of W floats held in a local accumulator, a fixed width the compiler vectorizes.
 * Everything runs on one thread, in a fixed order: results are deterministic (bit-identical resume).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AHEAD 8

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* (sum of r[0]'s 8 lanes, ..., sum of r[7]'s): 8 survivors' dot products reduced together, not one at a time */
static inline __m256 lottery_sum8(const __m256 *r) {
    const __m256 a0 = _mm256_hadd_ps(r[0], r[1]), a1 = _mm256_hadd_ps(r[2], r[3]);
    const __m256 a2 = _mm256_hadd_ps(r[4], r[5]), a3 = _mm256_hadd_ps(r[6], r[7]);
    const __m256 b0 = _mm256_hadd_ps(a0, a1), b1 = _mm256_hadd_ps(a2, a3);  /* low and high 128-bit halves */
    return _mm256_add_ps(_mm256_permute2f128_ps(b0, b1, 0x20), _mm256_permute2f128_ps(b0, b1, 0x31));
}
/* The weight gradient 8 survivors of row i at a time (k advanced past them): one horizontal sum per survivor was
   most of the kernel's time (LeNet-300-100's 784x300 layer at 3.6%, batch 60: 40 -> 26 us) */
#define SAMPLED_GROUPS(W)                                                                                          \
            {                                                                                                      \
                __m256 gv[W / 8];                                                                                  \
                for (int c = 0; c < W / 8; c++) gv[c] = _mm256_loadu_ps(g + 8 * c);                                \
                for (; k + 8 <= end; k += 8) {                                                                     \
                    __m256 r[8];                                                                                   \
                    for (int s = 0; s < 8; s++) {                                                                  \
                        const float *ahead = xt + col[k + s + AHEAD < nnz ? k + s + AHEAD : k] * ld + b0;          \
                        for (int c = 0; c < W; c += 16) __builtin_prefetch(ahead + c);                             \
                        const float *x = xt + col[k + s] * ld + b0;                                                \
                        __m256 acc = _mm256_mul_ps(gv[0], _mm256_loadu_ps(x));                                     \
                        for (int c = 1; c < W / 8; c++) acc = _mm256_fmadd_ps(gv[c], _mm256_loadu_ps(x + 8 * c), acc); \
                        r[s] = acc;                                                                                \
                    }                                                                                              \
                    _mm256_storeu_ps(out + k, _mm256_add_ps(_mm256_loadu_ps(out + k), lottery_sum8(r)));           \
                }                                                                                                  \
            }
#else
#define SAMPLED_GROUPS(W)
#endif

#define DEFINE_KERNELS(W)                                                                                            \
/* yt[i, :n] = bias[i] + sum over survivors k of row i of v[k] * xt[col[k], :n], where v[k] = vals[idx[k]] (e.g.   \
   the transpose's survivors read from the weight's own order) or, with idx NULL, vals[k]; bias may be NULL. Only   \
   the first n <= ld columns of each row of yt are written (the rest is padding nobody reads) */                   \
void lottery_csr_mm_##W(int64_t rows, int64_t nnz, const int64_t *crow, const int64_t *col, const float *vals,     \
                        const int64_t *idx, const float *bias, const float *xt, float *yt, int64_t ld, int64_t n) { \
    for (int64_t b0 = 0; b0 < n; b0 += W)                                                                          \
        for (int64_t i = 0; i < rows; i++) {                                                                       \
            float acc[W];                                                                                          \
            const float start = bias ? bias[i] : 0.0f;                                                             \
            for (int b = 0; b < W; b++) acc[b] = start;                                                            \
            const int64_t end = crow[i + 1];                                                                       \
            for (int64_t k = crow[i]; k < end; k++) {                                                              \
                const float *ahead = xt + col[k + AHEAD < nnz ? k + AHEAD : k] * ld + b0;                          \
                for (int c = 0; c < W; c += 16) __builtin_prefetch(ahead + c);                                     \
                const float v = idx ? vals[idx[k]] : vals[k];                                                      \
                const float *x = xt + col[k] * ld + b0;                                                            \
                for (int b = 0; b < W; b++) acc[b] += v * x[b];                                                    \
            }                                                                                                      \
            memcpy(yt + i * ld + b0, acc, (n - b0 < W ? n - b0 : W) * sizeof(float));                              \
        }                                                                                                          \
}                                                                                                                  \
/* out[k] = gyt[i, :] . xt[col[k], :] for each survivor k = (i, col[k]): the weight gradient at survivors only */   \
void lottery_csr_sampled_##W(int64_t rows, int64_t nnz, const int64_t *crow, const int64_t *col, const float *gyt,  \
                             const float *xt, float *out, int64_t ld) {                                            \
    for (int64_t k = 0; k < nnz; k++) out[k] = 0.0f;                                                               \
    for (int64_t b0 = 0; b0 < ld; b0 += W)                                                                         \
        for (int64_t i = 0; i < rows; i++) {                                                                       \
            float g[W];                                                                                            \
            memcpy(g, gyt + i * ld + b0, W * sizeof(float));                                                       \
            const int64_t end = crow[i + 1];                                                                       \
            int64_t k = crow[i];                                                                                   \
            SAMPLED_GROUPS(W)                                                                                      \
            for (; k < end; k++) {                                                                                 \
                const float *ahead = xt + col[k + AHEAD < nnz ? k + AHEAD : k] * ld + b0;                          \
                for (int c = 0; c < W; c += 16) __builtin_prefetch(ahead + c);                                     \
                const float *x = xt + col[k] * ld + b0;                                                            \
                /* 16 partial sums folded as a tree: a serial sum would chain 16 dependent adds per survivor */     \
                float part[16] = {0};                                                                              \
                for (int b = 0; b < W; b += 16)                                                                    \
                    for (int j = 0; j < 16; j++) part[j] += g[b + j] * x[b + j];                                   \
                for (int j = 0; j < 8; j++) part[j] += part[j + 8];                                                \
                for (int j = 0; j < 4; j++) part[j] += part[j + 4];                                                \
                out[k] += (part[0] + part[2]) + (part[1] + part[3]);                                               \
            }                                                                                                      \
        }                                                                                                          \
}

DEFINE_KERNELS(16)
DEFINE_KERNELS(64)

/* xt[j, b] = x[b * s0 + j * s1] for b < n, and 0 for n <= b < ld: the transposed, padded layout above. TILE rows
   of xt are written at once: no more than L1's ways, as ld floats apart may map to the same cache set (at batch
   1000, ld = 1024: 16 rows at once took 2.3 ms, 27x as long as at batch 256) */
#define TILE 8
void lottery_transpose_pad(int64_t n, int64_t m, const float *x, int64_t s0, int64_t s1, float *xt, int64_t ld) {
    if (s0 == 1) {  /* x feature-major already (e.g. a transposed view): row copies */
        for (int64_t j = 0; j < m; j++) {
            memcpy(xt + j * ld, x + j * s1, n * sizeof(float));
            memset(xt + j * ld + n, 0, (ld - n) * sizeof(float));
        }
        return;
    }
#if defined(__AVX2__) && defined(__FMA__)
    if (s1 == 1) {  /* row-major: 8x8 blocks transposed in registers (60x784: 16.7 -> 6.3 us), the rest below */
        const int64_t m8 = m - m % 8, n8 = n - n % 8;
        for (int64_t j0 = 0; j0 < m8; j0 += 8)
            for (int64_t b0 = 0; b0 < n8; b0 += 8) {
                __m256 r[8], t[8], u[8];
                for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + (b0 + i) * s0 + j0);
                for (int i = 0; i < 8; i += 2) {
                    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
                }
                for (int i = 0; i < 8; i += 4) {
                    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
                    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
                }
                for (int i = 0; i < 4; i++) {
                    _mm256_storeu_ps(xt + (j0 + i) * ld + b0, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
                    _mm256_storeu_ps(xt + (j0 + i + 4) * ld + b0, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
                }
            }
        for (int64_t j = 0; j < m; j++) {
            for (int64_t b = j < m8 ? n8 : 0; b < n; b++) xt[j * ld + b] = x[b * s0 + j];
            for (int64_t b = n; b < ld; b++) xt[j * ld + b] = 0.0f;
        }
        return;
    }
#endif
    for (int64_t j0 = 0; j0 < m; j0 += TILE) {
        const int64_t j1 = j0 + TILE < m ? j0 + TILE : m;
        for (int64_t b = 0; b < n; b++)
            for (int64_t j = j0; j < j1; j++) xt[j * ld + b] = x[b * s0 + j * s1];
        for (int64_t j = j0; j < j1; j++)
            for (int64_t b = n; b < ld; b++) xt[j * ld + b] = 0.0f;
    }
}

/* A CSR matrix bound once (batch-1 inference): its arrays in one struct, so that a call passes three pointers and
   a flag instead of seven arguments (ctypes converts each, ~0.06 us apiece). Column indices are int32 here: a third
   less to read than int64 where reading the matrix is most of the work. */
struct lottery_csr {
    int64_t rows;
    const int64_t *crow;
    const int32_t *col;
    const float *vals, *bias; /* bias may be NULL */
};

/* y[i] = bias[i] + sum over survivors k of row i of vals[k] * x[col[k]] for one example x (small enough for L1),
   then max(0, y[i]) where relu is not zero (a ReLU that follows the layer). */
void lottery_csr_mv(const struct lottery_csr *w, const float *x, float *y, int64_t relu) {
    const int64_t *crow = w->crow;
    const int32_t *col = w->col;
    const float *vals = w->vals, *bias = w->bias;
    for (int64_t i = 0; i < w->rows; i++) {
        int64_t k = crow[i];
        const int64_t end = crow[i + 1];
#if defined(__AVX2__) && defined(__FMA__)
        /* a row of 32 survivors or more 8 at a time, their inputs gathered in one instruction. Measured on
           LeNet-300-100's 784x300 layer (one-off, a dense product run between calls): 30.7 -> 17.0 us at 132 a row,
           11.2 -> 9.2 at 54; at 28 a row, the loop below alone took 5.5 us and gathering every row 6.2 */
        __m256 acc8 = _mm256_setzero_ps();
        if (end - k >= 32)
            for (; k + 8 <= end; k += 8) {
                const __m256i idx = _mm256_loadu_si256((const __m256i *)(col + k));
                acc8 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k), _mm256_i32gather_ps(x, idx, 4), acc8);
            }
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc8), _mm256_extractf128_ps(acc8, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        float acc[4] = {_mm_cvtss_f32(h), 0.0f, 0.0f, 0.0f};
#else
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#endif
        /* four partial sums: one would chain every multiply-add of the row on the last */
        for (; k + 4 <= end; k += 4)
            for (int j = 0; j < 4; j++) acc[j] += vals[k + j] * x[col[k + j]];
        for (; k < end; k++) acc[0] += vals[k] * x[col[k]];
        const float v = (bias ? bias[i] : 0.0f) + ((acc[0] + acc[1]) + (acc[2] + acc[3]));
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

static inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* The input's range of output columns [*ox0, *ox1) whose input column ox * sx + shift lies inside [0, W) */
static inline void conv_columns(int64_t W, int64_t OW, int64_t sx, int64_t shift, int64_t *ox0, int64_t *ox1) {
    *ox0 = shift >= 0 ? 0 : floor_div(-shift + sx - 1, sx);
    *ox1 = floor_div(W - 1 - shift, sx) + 1;
    if (*ox1 > OW) *ox1 = OW;
}

/* Row operations of the direct convolutions over n contiguous floats: dst += v * src, and the dot product a . b
   accumulated 8 lanes wide. With AVX2 the last n % 8 floats are a masked load (and store), not a scalar loop: a
   3x3 conv's rows are often 31 of 32 columns long, and that scalar tail was half of the weight gradient's time. */
#if defined(__AVX2__) && defined(__FMA__)
static const int32_t lottery_tail[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline void lottery_axpy(float *dst, const float *src, float v, int64_t n) {
    const __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_fmadd_ps(vv, _mm256_loadu_ps(src + i), _mm256_loadu_ps(dst + i)));
    if (i < n) {
        const __m256i m = _mm256_loadu_si256((const __m256i *)(lottery_tail + 8 - (n - i)));
        _mm256_maskstore_ps(dst + i, m, _mm256_fmadd_ps(vv, _mm256_maskload_ps(src + i, m),
                                                         _mm256_maskload_ps(dst + i, m)));
    }
}
typedef __m256 lottery_acc;
static inline lottery_acc lottery_acc_zero(void) { return _mm256_setzero_ps(); }
static inline lottery_acc lottery_dot(const float *a, const float *b, int64_t n, lottery_acc acc) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    if (i < n) {
        const __m256i m = _mm256_loadu_si256((const __m256i *)(lottery_tail + 8 - (n - i)));
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), acc);
    }
    return acc;
}
static inline float lottery_acc_sum(lottery_acc acc) {
    float p[8];
    _mm256_storeu_ps(p, acc);
    return ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
}
/* a . b over n floats with four independent chains (one FMA chain waits ~4 cycles a step), in a fixed order */
static inline float lottery_dot_long(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    s0 = lottery_dot(a + i, b + i, n - i, s0);
    return lottery_acc_sum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}
#else
static inline void lottery_axpy(float *dst, const float *src, float v, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += v * src[i];
}
typedef struct { float p[8]; } lottery_acc;
static inline lottery_acc lottery_acc_zero(void) { lottery_acc a = {{0}}; return a; }
static inline lottery_acc lottery_dot(const float *a, const float *b, int64_t n, lottery_acc acc) {
    for (int64_t i = 0; i < n; i++) acc.p[i & 7] += a[i] * b[i];
    return acc;
}
static inline float lottery_acc_sum(lottery_acc acc) {
    return ((acc.p[0] + acc.p[4]) + (acc.p[2] + acc.p[6])) + ((acc.p[1] + acc.p[5]) + (acc.p[3] + acc.p[7]));
}
static inline float lottery_dot_long(const float *a, const float *b, int64_t n) {
    return lottery_acc_sum(lottery_dot(a, b, n, lottery_acc_zero()));
}
#endif

/* Stride-1 convolutions on zero-padded input planes (Hp x Wp): output position (oy, ox) reads padded position
   (oy + ky*dy, ox + kx*dx), so with the output kept in the padded row pitch Wp each survivor is ONE contiguous
   axpy (or dot product) of L = (OH-1)*Wp + OW floats at offset off = c*Hp*Wp + ky*dy*Wp + kx*dx, instead of OH
   row-sized ones with their bounds: on Conv-2's 64->64 3x3 conv the row-by-row kernels spent most of their time
   between rows. The Wp - OW columns past each output row are scratch (computed and dropped; zero where read).
   These return nonzero where their scratch memory could not be had (the caller then goes row by row). */
/* What the stride-1 kernels work in: each survivor's offset into the padded planes, one sample's C padded planes,
   and one output-sized plane in the padded pitch. Nonzero (nothing held) where the memory could not be had. */
struct conv_scratch {
    int64_t *off;
    float *planes, *plane;
};

static int conv_scratch_get(struct conv_scratch *s, int64_t C, int64_t O, int64_t Hp, int64_t Wp, int64_t OH,
                            int64_t kh, int64_t kw, int64_t dy, int64_t dx, const int64_t *crow, const int64_t *col) {
    s->off = malloc((crow[O] + 1) * sizeof(int64_t));
    s->planes = malloc((C * Hp * Wp + 1) * sizeof(float));
    s->plane = malloc((OH * Wp + 1) * sizeof(float));
    if (!s->off || !s->planes || !s->plane) {
        free(s->off), free(s->planes), free(s->plane);
        return 1;
    }
    for (int64_t k = 0; k < crow[O]; k++) {
        const int64_t c = col[k] / (kh * kw), ky = col[k] / kw % kh, kx = col[k] % kw;
        s->off[k] = c * Hp * Wp + ky * dy * Wp + kx * dx;
    }
    return 0;
}

static void conv_scratch_free(struct conv_scratch *s) { free(s->off), free(s->planes), free(s->plane); }

/* x[b]'s C planes into xp with py rows and px columns of zeros around each */
static void conv_pad(const float *x, int64_t C, int64_t H, int64_t W, int64_t py, int64_t px, float *xp) {
    const int64_t Hp = H + 2 * py, Wp = W + 2 * px;
    memset(xp, 0, C * Hp * Wp * sizeof(float));
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < H; i++)
            memcpy(xp + (c * Hp + i + py) * Wp + px, x + (c * H + i) * W, W * sizeof(float));
}

/* gy's plane [OH, OW] in the padded pitch Wp, the columns past OW zero */
static void conv_pitch(const float *g, int64_t OH, int64_t OW, int64_t Wp, float *gp) {
    for (int64_t i = 0; i < OH; i++) {
        memcpy(gp + i * Wp, g + i * OW, OW * sizeof(float));
        memset(gp + i * Wp + OW, 0, (Wp - OW) * sizeof(float));
    }
}

static int conv_s1_forward(int64_t n, int64_t C, int64_t H, int64_t W, int64_t O, int64_t OH, int64_t OW,
                           int64_t kh, int64_t kw, int64_t py, int64_t px, int64_t dy, int64_t dx,
                           const int64_t *crow, const int64_t *col, const float *vals, const float *bias,
                           const float *x, float *y) {
    const int64_t Hp = H + 2 * py, Wp = W + 2 * px, L = (OH - 1) * Wp + OW;
    struct conv_scratch s;
    if (conv_scratch_get(&s, C, O, Hp, Wp, OH, kh, kw, dy, dx, crow, col)) return 1;
    for (int64_t b = 0; b < n; b++) {
        conv_pad(x + b * C * H * W, C, H, W, py, px, s.planes);
        for (int64_t o = 0; o < O; o++) {
            const float start = bias ? bias[o] : 0.0f;
            for (int64_t i = 0; i < L; i++) s.plane[i] = start;
            for (int64_t k = crow[o]; k < crow[o + 1]; k++) lottery_axpy(s.plane, s.planes + s.off[k], vals[k], L);
            float *out = y + (b * O + o) * OH * OW;
            for (int64_t i = 0; i < OH; i++) memcpy(out + i * OW, s.plane + i * Wp, OW * sizeof(float));
        }
    }
    conv_scratch_free(&s);
    return 0;
}

static int conv_s1_grad_input(int64_t n, int64_t C, int64_t H, int64_t W, int64_t O, int64_t OH, int64_t OW,
                              int64_t kh, int64_t kw, int64_t py, int64_t px, int64_t dy, int64_t dx,
                              const int64_t *crow, const int64_t *col, const float *vals, const float *gy,
                              float *gx) {
    const int64_t Hp = H + 2 * py, Wp = W + 2 * px, L = (OH - 1) * Wp + OW;
    struct conv_scratch s;
    if (conv_scratch_get(&s, C, O, Hp, Wp, OH, kh, kw, dy, dx, crow, col)) return 1;
    for (int64_t b = 0; b < n; b++) {
        memset(s.planes, 0, C * Hp * Wp * sizeof(float));
        for (int64_t o = 0; o < O; o++) {
            if (crow[o] == crow[o + 1]) continue;
            conv_pitch(gy + (b * O + o) * OH * OW, OH, OW, Wp, s.plane);
            for (int64_t k = crow[o]; k < crow[o + 1]; k++) lottery_axpy(s.planes + s.off[k], s.plane, vals[k], L);
        }
        for (int64_t c = 0; c < C; c++)  /* the padding's gradient is dropped */
            for (int64_t i = 0; i < H; i++)
                memcpy(gx + ((b * C + c) * H + i) * W, s.planes + (c * Hp + i + py) * Wp + px, W * sizeof(float));
    }
    conv_scratch_free(&s);
    return 0;
}

static int conv_s1_grad_weight(int64_t n, int64_t C, int64_t H, int64_t W, int64_t O, int64_t OH, int64_t OW,
                               int64_t kh, int64_t kw, int64_t py, int64_t px, int64_t dy, int64_t dx,
                               const int64_t *crow, const int64_t *col, const float *x, const float *gy,
                               float *gw) {
    const int64_t Hp = H + 2 * py, Wp = W + 2 * px, L = (OH - 1) * Wp + OW;
    struct conv_scratch s;
    if (conv_scratch_get(&s, C, O, Hp, Wp, OH, kh, kw, dy, dx, crow, col)) return 1;
    memset(gw, 0, crow[O] * sizeof(float));
    for (int64_t b = 0; b < n; b++) {
        conv_pad(x + b * C * H * W, C, H, W, py, px, s.planes);
        for (int64_t o = 0; o < O; o++) {
            if (crow[o] == crow[o + 1]) continue;
            conv_pitch(gy + (b * O + o) * OH * OW, OH, OW, Wp, s.plane);
            for (int64_t k = crow[o]; k < crow[o + 1]; k++) gw[k] += lottery_dot_long(s.plane, s.planes + s.off[k], L);
        }
    }
    conv_scratch_free(&s);
    return 0;
}

/* A direct sparse convolution (groups 1, zero padding), with no unfolded copy of the input: for each survivor
   (o, c, ky, kx) of a CSR weight [O, C*kh*kw] (columns in unfold's (c, ky, kx) order), its value times the input
   plane of channel c, shifted, is added to output plane o, row by row. An output plane stays in L1 across its
   survivors. y[b, o] = bias[o] + sum of those. x is [n, C, H, W] and y [n, O, OH, OW], both contiguous. */
void lottery_sparse_conv2d(int64_t n, int64_t C, int64_t H, int64_t W, int64_t O, int64_t OH, int64_t OW,
                           int64_t kh, int64_t kw, int64_t sy, int64_t sx, int64_t py, int64_t px, int64_t dy,
                           int64_t dx, const int64_t *crow, const int64_t *col, const float *vals, const float *bias,
                           const float *x, float *y) {
    if (sy == 1 && sx == 1 && OH > 0 && OW > 0 &&
        !conv_s1_forward(n, C, H, W, O, OH, OW, kh, kw, py, px, dy, dx, crow, col, vals, bias, x, y))
        return;
    for (int64_t b = 0; b < n; b++)
        for (int64_t o = 0; o < O; o++) {
            float *out = y + (b * O + o) * OH * OW;
            const float start = bias ? bias[o] : 0.0f;
            for (int64_t i = 0; i < OH * OW; i++) out[i] = start;
            for (int64_t k = crow[o]; k < crow[o + 1]; k++) {
                const int64_t c = col[k] / (kh * kw), ky = col[k] / kw % kh, kx = col[k] % kw;
                const float v = vals[k];
                const float *in = x + (b * C + c) * H * W;
                const int64_t shift = kx * dx - px;  /* ix = ox * sx + shift */
                int64_t ox0, ox1;
                conv_columns(W, OW, sx, shift, &ox0, &ox1);
                for (int64_t oy = 0; oy < OH; oy++) {
                    const int64_t iy = oy * sy - py + ky * dy;
                    if (iy < 0 || iy >= H) continue;
                    float *dst = out + oy * OW;
                    const float *row = in + iy * W + shift;
                    if (sx == 1)
                        lottery_axpy(dst + ox0, row + ox0, v, ox1 - ox0);
                    else
                        for (int64_t ox = ox0; ox < ox1; ox++) dst[ox] += v * row[ox * sx];
                }
            }
        }
}

/* The input gradient of lottery_sparse_conv2d (same arguments, gy [n, O, OH, OW] for y): each survivor's value times
   output plane o of gy is added, shifted back, to input plane c of gx ([n, C, H, W], written whole here). The same
   walk as the forward with source and destination swapped; a fixed order, so deterministic. */
void lottery_sparse_conv2d_grad_input(int64_t n, int64_t C, int64_t H, int64_t W, int64_t O, int64_t OH, int64_t OW,
                                      int64_t kh, int64_t kw, int64_t sy, int64_t sx, int64_t py, int64_t px,
                                      int64_t dy, int64_t dx, const int64_t *crow, const int64_t *col,
                                      const float *vals, const float *gy, float *gx) {
    if (sy == 1 && sx == 1 && OH > 0 && OW > 0 &&
        !conv_s1_grad_input(n, C, H, W, O, OH, OW, kh, kw, py, px, dy, dx, crow, col, vals, gy, gx))
        return;
    memset(gx, 0, n * C * H * W * sizeof(float));
    for (int64_t b = 0; b < n; b++)
        for (int64_t o = 0; o < O; o++) {
            const float *g = gy + (b * O + o) * OH * OW;
            for (int64_t k = crow[o]; k < crow[o + 1]; k++) {
                const int64_t c = col[k] / (kh * kw), ky = col[k] / kw % kh, kx = col[k] % kw;
                const float v = vals[k];
                float *in = gx + (b * C + c) * H * W;
                const int64_t shift = kx * dx - px;
                int64_t ox0, ox1;
                conv_columns(W, OW, sx, shift, &ox0, &ox1);
                for (int64_t oy = 0; oy < OH; oy++) {
                    const int64_t iy = oy * sy - py + ky * dy;
                    if (iy < 0 || iy >= H) continue;
                    float *row = in + iy * W + shift;
                    const float *src = g + oy * OW;
                    if (sx == 1)
                        lottery_axpy(row + ox0, src + ox0, v, ox1 - ox0);
                    else
                        for (int64_t ox = ox0; ox < ox1; ox++) row[ox * sx] += v * src[ox];
                }
            }
        }
}

/* The weight gradient of lottery_sparse_conv2d at its survivors only: gw[k] = sum over the batch and the output
   positions of gy[b, o, oy, ox] * x[b, c, iy, ix] for survivor k = (o, c, ky, kx), in CSR order, summed 8 lanes
   wide (lottery_dot), folded in a fixed order: deterministic. */
void lottery_sparse_conv2d_grad_weight(int64_t n, int64_t C, int64_t H, int64_t W, int64_t O, int64_t OH,
                                       int64_t OW, int64_t kh, int64_t kw, int64_t sy, int64_t sx, int64_t py,
                                       int64_t px, int64_t dy, int64_t dx, const int64_t *crow, const int64_t *col,
                                       const float *x, const float *gy, float *gw) {
    if (sy == 1 && sx == 1 && OH > 0 && OW > 0 &&
        !conv_s1_grad_weight(n, C, H, W, O, OH, OW, kh, kw, py, px, dy, dx, crow, col, x, gy, gw))
        return;
    memset(gw, 0, crow[O] * sizeof(float));
    for (int64_t b = 0; b < n; b++)
        for (int64_t o = 0; o < O; o++) {
            const float *g = gy + (b * O + o) * OH * OW;
            for (int64_t k = crow[o]; k < crow[o + 1]; k++) {
                const int64_t c = col[k] / (kh * kw), ky = col[k] / kw % kh, kx = col[k] % kw;
                const float *in = x + (b * C + c) * H * W;
                const int64_t shift = kx * dx - px;
                int64_t ox0, ox1;
                conv_columns(W, OW, sx, shift, &ox0, &ox1);
                lottery_acc acc = lottery_acc_zero();
                float part[8] = {0};  /* strided rows (sx > 1): scalar partial sums */
                for (int64_t oy = 0; oy < OH; oy++) {
                    const int64_t iy = oy * sy - py + ky * dy;
                    if (iy < 0 || iy >= H) continue;
                    const float *row = in + iy * W + shift, *src = g + oy * OW;
                    if (sx == 1)
                        acc = lottery_dot(src + ox0, row + ox0, ox1 - ox0, acc);
                    else
                        for (int64_t ox = ox0; ox < ox1; ox++) part[ox & 7] += src[ox] * row[ox * sx];
                }
                gw[k] += lottery_acc_sum(acc) + (((part[0] + part[4]) + (part[2] + part[6])) +
                                                 ((part[1] + part[5]) + (part[3] + part[7])));
            }
        }
}

/* dst[k] = src[idx[k]]: a weight's (or its optimizer state's) survivors */
void lottery_gather(int64_t n, const int64_t *idx, const float *src, float *dst) {
    for (int64_t k = 0; k < n; k++) dst[k] = src[idx[k]];
}

/* dst[idx[k]] = src[k]: survivors written back into the whole tensor */
void lottery_scatter(int64_t n, const int64_t *idx, const float *src, float *dst) {
    for (int64_t k = 0; k < n; k++) dst[idx[k]] = src[k];
}

/* A sparse Linear layer's forward in one call: xt = x transposed and padded (kept for the backward pass), then
   y = W xt + bias computed feature-major and written back row-major ([n, rows], contiguous). One call instead of
   several: each torch operation costs microseconds between kernels. Row-major, not feature-major, because a dense
   layer that reads it runs 2x slower on a transposed input (Linear 100->10 at batch 60: 27 against 12 us), while
   the transpose back costs ~3 us. Returns nonzero where the scratch memory could not be had. */
int lottery_linear_forward(int64_t n, int64_t m, const float *x, int64_t s0, int64_t s1, float *xt, int64_t ld,
                           int64_t rows, int64_t nnz, const int64_t *crow, const int64_t *col, const float *vals,
                           const float *bias, float *y) {
    float *yt = malloc((rows * ld + 1) * sizeof(float));  /* + 1: malloc(0) may give NULL (an empty batch) */
    if (!yt) return 1;
    lottery_transpose_pad(n, m, x, s0, s1, xt, ld);
    if (ld % 64 == 0)
        lottery_csr_mm_64(rows, nnz, crow, col, vals, NULL, bias, xt, yt, ld, n);
    else
        lottery_csr_mm_16(rows, nnz, crow, col, vals, NULL, bias, xt, yt, ld, n);
    lottery_transpose_pad(rows, n, yt, ld, 1, y, rows);
    free(yt);
    return 0;
}

/* Its backward pass in one call, from gy ([n, rows], any strides): gyt = gy transposed and padded; the bias
   gradient gb[i] = sum over the batch of gy[:, i] (in a fixed order); the weight gradient at survivors gw; and the
   input gradient gx = Wt gy ([n, cols], row-major as y above), from the transpose's CSR with the survivors' values
   read through t_perm. Any of gb, gw, gx may be NULL (not wanted). Returns nonzero where memory ran out. */
int lottery_linear_backward(int64_t n, int64_t rows, int64_t cols, const float *gy, int64_t s0, int64_t s1,
                            int64_t ld, int64_t nnz, const int64_t *crow, const int64_t *col, const float *xt,
                            float *gw, const int64_t *t_crow, const int64_t *t_col, const int64_t *t_perm,
                            const float *vals, float *gx, float *gb) {
    float *gyt = malloc((rows * ld + 1) * sizeof(float)), *gxt = gx ? malloc((cols * ld + 1) * sizeof(float)) : NULL;
    if (!gyt || (gx && !gxt)) {
        free(gyt);
        free(gxt);
        return 1;
    }
    lottery_transpose_pad(n, rows, gy, s0, s1, gyt, ld);
    if (gb)
        for (int64_t i = 0; i < rows; i++) {
            float sum = 0.0f;
            for (int64_t b = 0; b < n; b++) sum += gyt[i * ld + b];
            gb[i] = sum;
        }
    const int wide = ld % 64 == 0;
    if (gw) {
        if (wide) lottery_csr_sampled_64(rows, nnz, crow, col, gyt, xt, gw, ld);
        else lottery_csr_sampled_16(rows, nnz, crow, col, gyt, xt, gw, ld);
    }
    if (gx) {
        if (wide) lottery_csr_mm_64(cols, nnz, t_crow, t_col, vals, t_perm, NULL, gyt, gxt, ld, n);
        else lottery_csr_mm_16(cols, nnz, t_crow, t_col, vals, t_perm, NULL, gyt, gxt, ld, n);
        lottery_transpose_pad(cols, n, gxt, ld, 1, gx, cols);
    }
    free(gyt);
    free(gxt);
    return 0;
}
