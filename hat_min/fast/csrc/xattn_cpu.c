/* The t2i cross-attention (words attend to regions) after its matmul: see hat_min/fast/kernels.py.
 *
 * A block holds `images` images of `regions` regions and `n` captions of `w` word slots (padding
 * slots are zero vectors, so their raw scores are 0). Its raw scores s come from one matmul,
 * laid out (images, regions, w, n): the caption axis is innermost, so every loop below runs over
 * captions with vector instructions.
 *
 *   xattn_t2i_attention: e_rj = exp(lambda * a_rj / (||a_r.||_words + eps)), a = LeakyReLU(s),
 *                        and dot_j = sum_r e_rj s_rj (word . context, times the softmax's sum)
 *   xattn_t2i_cosines:   sq_j = e_.j^T G e_.j (|context|^2, times that sum squared), G the image's
 *                        Gram matrix of regions; out = mean over the real words of
 *                        dot_j / max(sqrt(sq_j) |word_j|, eps)
 *
 * The softmax's sum cancels in the cosine, and |lambda * a / ||a||| <= lambda <= 20 keeps exp
 * finite without subtracting a maximum. Plain C99 + OpenMP, no Python or torch headers: it
 * compiles in well under a second and runs on torch's own OpenMP thread pool (kernels.py links
 * it against torch's runtime).
 */
#include <math.h>
#include <stdint.h>

#define LOG2E 1.44269504088896341f
#define CHUNK 64 /* captions per inner loop of the attention: accumulators stay in L1 */
#define LANES 32 /* captions per inner loop of the cosines: two AVX-512 registers of floats */
#define ROWS 8   /* rows of the Gram matrix per pass of quadratic_form */
#define MAX_REGIONS 1024 /* xattn_t2i_cosines keeps a (regions, LANES) tile on its stack: 129 KB */

/* 2^x for |x| <= 126: x = k + f with k an integer and |f| <= 1/2, 2^f by its degree-6 Taylor
 * polynomial (relative error below 2e-7), 2^k straight into the exponent bits. No branches or
 * library calls, so that the compiler vectorises the loops around it. Here |x| <= 20 / ln 2. */
static inline float exp2_f32(float x) {
    const float k = (x + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5 * 2^23 */
    const float f = x - k;
    float p = 1.5403530e-4f;
    p = fmaf(p, f, 1.3333558e-3f);
    p = fmaf(p, f, 9.6181291e-3f);
    p = fmaf(p, f, 5.5504109e-2f);
    p = fmaf(p, f, 2.4022651e-1f);
    p = fmaf(p, f, 6.9314718e-1f);
    p = fmaf(p, f, 1.0f);
    union { int32_t i; float f; } two_k;
    two_k.i = ((int32_t)k + 127) << 23;
    return p * two_k.f;
}

static inline float leaky(float s, float slope) { return s > slope * s ? s : slope * s; } /* slope < 1 */

/* se: (images, regions, w, n), the raw scores s on entry and the attention e on return (in place);
 * dot: (images, w, n) receives sum_r e s, word . context times the softmax's sum. */
void xattn_t2i_attention(float *se, float *dot, int64_t images, int64_t regions, int64_t w, int64_t n,
                         float slope, float lambda, float eps) {
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < images; i++) {
        for (int64_t chunk = 0; chunk < chunks; chunk++) {
            const int64_t c0 = chunk * CHUNK, cn = (n - c0 < CHUNK) ? n - c0 : CHUNK;
            float *dots = dot + i * w * n + c0;
            for (int64_t j = 0; j < w; j++)
                for (int64_t c = 0; c < cn; c++) dots[j * n + c] = 0.0f;
            for (int64_t r = 0; r < regions; r++) {
                float *row = se + (i * regions + r) * w * n + c0, scale[CHUNK];
                for (int64_t c = 0; c < cn; c++) scale[c] = 0.0f;
                for (int64_t j = 0; j < w; j++) { /* squared L2 norm of a over the words (the queries) */
#pragma omp simd
                    for (int64_t c = 0; c < cn; c++) {
                        const float a = leaky(row[j * n + c], slope);
                        scale[c] = fmaf(a, a, scale[c]);
                    }
                }
#pragma omp simd
                for (int64_t c = 0; c < cn; c++) scale[c] = lambda * LOG2E / (sqrtf(scale[c]) + eps);
                for (int64_t j = 0; j < w; j++) { /* exp(lambda a / |a|) = 2^(lambda log2(e) a / |a|) */
#pragma omp simd
                    for (int64_t c = 0; c < cn; c++) {
                        const float s = row[j * n + c], e = exp2_f32(leaky(s, slope) * scale[c]);
                        dots[j * n + c] = fmaf(e, s, dots[j * n + c]);
                        row[j * n + c] = e;
                    }
                }
            }
        }
    }
}

/* |c|^2 = e^T G e for one word slot of LANES captions: e (regions, LANES) in L1, g the image's Gram
 * matrix as an upper triangle U with its diagonal halved, so that e^T G e = 2 e^T U e: half the
 * products of G e. g is laid out (blocks, regions, ROWS): g[b][r][k] = U[b * ROWS + k][r], zero in
 * padding rows, so a block of ROWS rows reads one cache line per region, and its ROWS x LANES
 * accumulators (16 AVX-512 registers) keep the multiply-add units busy. */
static inline void quadratic_form(const float *g, const float e[][LANES], int64_t regions, float sq[LANES]) {
    for (int64_t c = 0; c < LANES; c++) sq[c] = 0.0f;
    for (int64_t r0 = 0; r0 < regions; r0 += ROWS) {
        const float *gb = g + r0 * regions; /* this block: (regions, ROWS) */
        float y[ROWS][LANES] = {{0.0f}};
        for (int64_t r = r0; r < regions; r++) { /* U is zero left of the diagonal */
            for (int64_t k = 0; k < ROWS; k++) {
                const float gk = gb[r * ROWS + k];
#pragma omp simd
                for (int64_t c = 0; c < LANES; c++) y[k][c] = fmaf(gk, e[r][c], y[k][c]);
            }
        }
        for (int64_t k = 0; k < ROWS; k++) {
#pragma omp simd
            for (int64_t c = 0; c < LANES; c++) sq[c] = fmaf(e[r0 + k][c], y[k][c], sq[c]);
        }
    }
    for (int64_t c = 0; c < LANES; c++) sq[c] *= 2.0f;
}

/* e: (images, regions, w, n); dot: (images, w, n); gram_upper: (images, padded, regions), padded =
 * regions rounded up to ROWS, laid out as quadratic_form reads it; word_norms: (w, n), zero on
 * padding; counts: (n,) real words. out[i * out_stride + c] receives the mean cosine of image i
 * and caption c. */
void xattn_t2i_cosines(const float *dot, const float *e, const float *gram_upper, const float *word_norms,
                       const float *counts, float *out, int64_t out_stride, int64_t images,
                       int64_t regions, int64_t w, int64_t n, float eps) {
    const int64_t chunks = (n + LANES - 1) / LANES, m = w * n, padded = (regions + ROWS - 1) / ROWS * ROWS;
    if (regions > MAX_REGIONS) return; /* kernels.py never calls with more */
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < images; i++) {
        for (int64_t chunk = 0; chunk < chunks; chunk++) {
            const int64_t c0 = chunk * LANES, cn = (n - c0 < LANES) ? n - c0 : LANES;
            const float *g = gram_upper + i * padded * regions;
            float el[MAX_REGIONS + ROWS][LANES], sq[LANES], total[LANES] = {0.0f};
            for (int64_t r = regions; r < padded; r++)
                for (int64_t c = 0; c < LANES; c++) el[r][c] = 0.0f;
            for (int64_t j = 0; j < w; j++) {
                for (int64_t r = 0; r < regions; r++) { /* this word slot's attention, LANES captions wide */
                    const float *er = e + (i * regions + r) * m + j * n + c0;
                    if (cn == LANES) {
#pragma omp simd
                        for (int64_t c = 0; c < LANES; c++) el[r][c] = er[c];
                    } else {
                        for (int64_t c = 0; c < LANES; c++) el[r][c] = c < cn ? er[c] : 0.0f;
                    }
                }
                quadratic_form(g, (const float (*)[LANES])el, regions, sq);
                const float *norms = word_norms + j * n + c0, *dots = dot + i * m + j * n + c0;
                for (int64_t c = 0; c < cn; c++) {
                    const float length = sqrtf(sq[c] > 0.0f ? sq[c] : 0.0f) * norms[c];
                    total[c] += dots[c] / (length > eps ? length : eps); /* padding: dot = 0 */
                }
            }
            for (int64_t c = 0; c < cn; c++) out[i * out_stride + c0 + c] = total[c] / counts[c0 + c];
        }
    }
}
