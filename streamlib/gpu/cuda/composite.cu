// Composite up to MAX_LAYERS RGB/RGBA uint8 layers over a base image or a background
// colour, one thread per output pixel, in one pass. Launched by streamlib.kernels.composite
// (more layers: chained launches with the output as the next base).
//
// Rounding rule of streamlib.actors.compositor, bit-exact with composite_reference:
//   a   = round(alpha * op / 255)        (RGB layers: a = op)
//   out = round((src * a + dst * (255 - a)) / 255)
// x / 255 of an integer is never a tie, so round(x / 255) == (x + 127) / 255 exactly.
// Layers apply in order, each rounded to 8 bits before the next.
//
// Pointers arrive as unsigned long long (CuPy passes numpy.uint64 by value); a null
// base means "background colour only". Pitches are in bytes per row; pixels are packed.

#define MAX_LAYERS 8

__device__ __forceinline__ unsigned int div255(unsigned int x) { return (x + 127u) / 255u; }

struct Layer {
    const unsigned char* src;
    int x, y, w, h, pitch, channels, op;
};

#define LAYER_ARGS(i) unsigned long long src##i, int x##i, int y##i, int w##i, int h##i, \
    int pitch##i, int ch##i, int op##i
#define LAYER_INIT(i) {(const unsigned char*)src##i, x##i, y##i, w##i, h##i, pitch##i, ch##i, op##i}

extern "C" __global__ void composite_rgb(
    unsigned long long out_ptr, int width, int height,
    unsigned long long base_ptr, int base_w, int base_h, int base_pitch, int base_ch,
    int bg_r, int bg_g, int bg_b, int n_layers,
    LAYER_ARGS(0), LAYER_ARGS(1), LAYER_ARGS(2), LAYER_ARGS(3),
    LAYER_ARGS(4), LAYER_ARGS(5), LAYER_ARGS(6), LAYER_ARGS(7))
{
    const int px = blockIdx.x * blockDim.x + threadIdx.x;
    const int py = blockIdx.y * blockDim.y + threadIdx.y;
    if (px >= width || py >= height) return;

    unsigned int r = (unsigned int)bg_r, g = (unsigned int)bg_g, b = (unsigned int)bg_b;
    if (base_ptr != 0ull && px < base_w && py < base_h) {
        const unsigned char* p = (const unsigned char*)base_ptr
            + (long long)py * base_pitch + (long long)px * base_ch;
        r = p[0]; g = p[1]; b = p[2];
    }
    const Layer layers[MAX_LAYERS] = {LAYER_INIT(0), LAYER_INIT(1), LAYER_INIT(2), LAYER_INIT(3),
                                      LAYER_INIT(4), LAYER_INIT(5), LAYER_INIT(6), LAYER_INIT(7)};
#pragma unroll
    for (int k = 0; k < MAX_LAYERS; ++k) {
        if (k >= n_layers) break;
        const Layer L = layers[k];
        const int sx = px - L.x, sy = py - L.y;
        if (sx < 0 || sy < 0 || sx >= L.w || sy >= L.h) continue;
        const unsigned char* s = L.src + (long long)sy * L.pitch + (long long)sx * L.channels;
        const unsigned int a = L.channels == 4 ? div255((unsigned int)s[3] * (unsigned int)L.op)
                                               : (unsigned int)L.op;
        const unsigned int ia = 255u - a;
        r = div255(s[0] * a + r * ia);
        g = div255(s[1] * a + g * ia);
        b = div255(s[2] * a + b * ia);
    }
    unsigned char* o = (unsigned char*)out_ptr + ((long long)py * width + px) * 3;
    o[0] = (unsigned char)r;
    o[1] = (unsigned char)g;
    o[2] = (unsigned char)b;
}
