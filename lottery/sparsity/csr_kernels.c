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
#include <string.h>

#define AHEAD 8

#define DEFINE_KERNELS(W)                                                                                            \
/* yt[i, :] = bias[i] + sum over survivors k of row i of v[k] * xt[col[k], :], where v[k] = vals[idx[k]] (the      \
   survivors read in place from the whole weight) or, with idx NULL, vals[k]; bias may be NULL */                  \
void lottery_csr_mm_##W(int64_t rows, int64_t nnz, const int64_t *crow, const int64_t *col, const float *vals,     \
                        const int64_t *idx, const float *bias, const float *xt, float *yt, int64_t ld) {           \
    for (int64_t b0 = 0; b0 < ld; b0 += W)                                                                         \
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
            memcpy(yt + i * ld + b0, acc, W * sizeof(float));                                                      \
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
            for (int64_t k = crow[i]; k < end; k++) {                                                              \
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
    for (int64_t j0 = 0; j0 < m; j0 += TILE) {
        const int64_t j1 = j0 + TILE < m ? j0 + TILE : m;
        for (int64_t b = 0; b < n; b++)
            for (int64_t j = j0; j < j1; j++) xt[j * ld + b] = x[b * s0 + j * s1];
        for (int64_t j = j0; j < j1; j++)
            for (int64_t b = n; b < ld; b++) xt[j * ld + b] = 0.0f;
    }
}

/* y[i] = bias[i] + sum over survivors k of row i of vals[k] * x[col[k]]: one example (x is small enough for L1) */
void lottery_csr_mv(int64_t rows, const int64_t *crow, const int64_t *col, const float *vals, const float *bias,
                    const float *x, float *y) {
    for (int64_t i = 0; i < rows; i++) {
        /* four partial sums: one would chain every multiply-add of the row on the last */
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        int64_t k = crow[i];
        const int64_t end = crow[i + 1];
        for (; k + 4 <= end; k += 4)
            for (int j = 0; j < 4; j++) acc[j] += vals[k + j] * x[col[k + j]];
        for (; k < end; k++) acc[0] += vals[k] * x[col[k]];
        y[i] = (bias ? bias[i] : 0.0f) + ((acc[0] + acc[1]) + (acc[2] + acc[3]));
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
