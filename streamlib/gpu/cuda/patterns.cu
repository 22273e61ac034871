// SMPTE RP 219-1 bars on the device, identical to streamlib.actors.patterns.render_smpte_bars.
// The layout comes from streamlib.kernels as an int table, 4 bands x MAX_REGIONS regions x
// 5 ints: (x0, x1, r, g, b); r = -1 marks the ramp, with g = lo and b = hi codes. Bands end
// at rows r1, r2, r3 and height. One thread per pixel. The ramp value is
// floor((x - x0) * (hi - lo) / max(1, n - 1) + lo + 0.5) in double precision, evaluated
// in the same order as the torch reference (compile with -fmad=false).

#define MAX_REGIONS 12

extern "C" __global__ void smpte_bars(
    unsigned long long out_ptr, int width, int height, int r1, int r2, int r3,
    unsigned long long table_ptr)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const int band = y < r1 ? 0 : (y < r2 ? 1 : (y < r3 ? 2 : 3));
    const int* t = (const int*)table_ptr + band * MAX_REGIONS * 5;
    int k = 0;
    while (k < MAX_REGIONS - 1 && x >= t[5 * k + 1]) ++k;
    const int* reg = t + 5 * k;
    int r, g, b;
    if (reg[2] < 0) {
        const int n = reg[1] - reg[0];
        const int lo = reg[3], hi = reg[4];
        double s = (double)(x - reg[0]) * (double)(hi - lo);
        s = s / (double)(n > 1 ? n - 1 : 1);
        const int v = (int)floor((s + (double)lo) + 0.5);
        r = g = b = v;
    } else {
        r = reg[2]; g = reg[3]; b = reg[4];
    }
    unsigned char* o = (unsigned char*)out_ptr + ((long long)y * width + x) * 3;
    o[0] = (unsigned char)r;
    o[1] = (unsigned char)g;
    o[2] = (unsigned char)b;
}
