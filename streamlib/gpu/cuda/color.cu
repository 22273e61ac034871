// RGB24/RGBA <-> YUV 4:2:0 (NV12 or I420), BT.709 limited range, 8 bits.
// Integer fixed point with 16 fractional bits, the conventions of streamlib.net.pgroup:
// coefficients are round(c * 65536) (computed in streamlib.kernels and passed in), a value
// is (sum + offset * 65536 + 32768) >> 16, i.e. round half up, then clamped to 0..255.
// Chroma of a 2x2 block is computed from the sum of its four pixels with quarter
// coefficients (the mean, before rounding). Decoding repeats a block's chroma for its
// four pixels. One thread per 2x2 block. Width and height are even.
//
// Frame layout (a (H*3/2, W) uint8 tensor, rows of W bytes):
//   NV12: Y plane, then H/2 rows of interleaved U V;
//   I420: Y plane, then the U plane (H/2 x W/2), then the V plane, packed.

__device__ __forceinline__ int clamp255(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

extern "C" __global__ void rgb_to_yuv420(
    unsigned long long rgb_ptr, int width, int height, int pitch, int channels,
    unsigned long long out_ptr, int nv12,
    int yr, int yg, int yb, int cbr, int cbg, int cbb, int crr, int crg, int crb,
    int y_off, int c_off)
{
    const int bx = blockIdx.x * blockDim.x + threadIdx.x;
    const int by = blockIdx.y * blockDim.y + threadIdx.y;
    if (bx >= width / 2 || by >= height / 2) return;
    const unsigned char* rgb = (const unsigned char*)rgb_ptr;
    unsigned char* out = (unsigned char*)out_ptr;
    int rs = 0, gs = 0, bs = 0;
#pragma unroll
    for (int dy = 0; dy < 2; ++dy) {
#pragma unroll
        for (int dx = 0; dx < 2; ++dx) {
            const int x = 2 * bx + dx, y = 2 * by + dy;
            const unsigned char* p = rgb + (long long)y * pitch + (long long)x * channels;
            const int r = p[0], g = p[1], b = p[2];
            rs += r; gs += g; bs += b;
            out[(long long)y * width + x] =
                (unsigned char)clamp255((yr * r + yg * g + yb * b + y_off + 32768) >> 16);
        }
    }
    const int cb = clamp255((cbr * rs + cbg * gs + cbb * bs + c_off + 32768) >> 16);
    const int cr = clamp255((crr * rs + crg * gs + crb * bs + c_off + 32768) >> 16);
    const long long plane = (long long)width * height;
    if (nv12) {
        unsigned char* uv = out + plane + (long long)by * width + 2 * bx;
        uv[0] = (unsigned char)cb;
        uv[1] = (unsigned char)cr;
    } else {
        const long long i = (long long)by * (width / 2) + bx;
        out[plane + i] = (unsigned char)cb;
        out[plane + plane / 4 + i] = (unsigned char)cr;
    }
}

extern "C" __global__ void yuv420_to_rgb(
    unsigned long long in_ptr, int width, int height, int nv12, unsigned long long out_ptr,
    int ky, int rcr, int gcb, int gcr, int bcb, int y_off, int c_mid)
{
    const int bx = blockIdx.x * blockDim.x + threadIdx.x;
    const int by = blockIdx.y * blockDim.y + threadIdx.y;
    if (bx >= width / 2 || by >= height / 2) return;
    const unsigned char* in = (const unsigned char*)in_ptr;
    unsigned char* out = (unsigned char*)out_ptr;
    const long long plane = (long long)width * height;
    int cb, cr;
    if (nv12) {
        const unsigned char* uv = in + plane + (long long)by * width + 2 * bx;
        cb = uv[0];
        cr = uv[1];
    } else {
        const long long i = (long long)by * (width / 2) + bx;
        cb = in[plane + i];
        cr = in[plane + plane / 4 + i];
    }
    const int dcb = cb - c_mid, dcr = cr - c_mid;
    const int c_r = rcr * dcr, c_g = gcb * dcb + gcr * dcr, c_b = bcb * dcb;
#pragma unroll
    for (int dy = 0; dy < 2; ++dy) {
#pragma unroll
        for (int dx = 0; dx < 2; ++dx) {
            const int x = 2 * bx + dx, y = 2 * by + dy;
            const int ly = ky * (in[(long long)y * width + x] - y_off) + 32768;
            unsigned char* o = out + ((long long)y * width + x) * 3;
            o[0] = (unsigned char)clamp255((ly + c_r) >> 16);
            o[1] = (unsigned char)clamp255((ly + c_g) >> 16);
            o[2] = (unsigned char)clamp255((ly + c_b) >> 16);
        }
    }
}
