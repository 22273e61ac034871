// RGB24/RGBA <-> RFC 4175 YCbCr-4:2:2/10 pgroups: 5 bytes per 2 pixels, Cb Y0 Cr Y1 as
// four 10-bit fields, most significant bit first. BT.709 limited range, integer fixed
// point with 16 fractional bits, bit-identical to streamlib.net.pgroup: coefficients
// round(c * 65536) passed in from streamlib.kernels, values (sum + offset * 65536 + 32768)
// >> 16 (round half up) clamped to 4..1019; chroma from the sum of the pair with half
// coefficients (the mean before rounding). Decoding repeats the pair's chroma and clamps
// RGB to 0..255. One thread per pixel pair; the width is even; lines are packed
// (W / 2 * 5 bytes each).

__device__ __forceinline__ int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

extern "C" __global__ void rgb_to_pgroup422_10(
    unsigned long long rgb_ptr, int width, int height, int pitch, int channels,
    unsigned long long out_ptr,
    int yr, int yg, int yb, int cbr, int cbg, int cbb, int crr, int crg, int crb,
    int y_off, int c_off, int lo, int hi)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (p >= width / 2 || row >= height) return;
    const unsigned char* s = (const unsigned char*)rgb_ptr + (long long)row * pitch
        + (long long)(2 * p) * channels;
    const int r0 = s[0], g0 = s[1], b0 = s[2];
    const int r1 = s[channels], g1 = s[channels + 1], b1 = s[channels + 2];
    const int y0 = clampi((yr * r0 + yg * g0 + yb * b0 + y_off + 32768) >> 16, lo, hi);
    const int y1 = clampi((yr * r1 + yg * g1 + yb * b1 + y_off + 32768) >> 16, lo, hi);
    const int rs = r0 + r1, gs = g0 + g1, bs = b0 + b1;
    const int cb = clampi((cbr * rs + cbg * gs + cbb * bs + c_off + 32768) >> 16, lo, hi);
    const int cr = clampi((crr * rs + crg * gs + crb * bs + c_off + 32768) >> 16, lo, hi);
    unsigned char* o = (unsigned char*)out_ptr + (long long)row * (width / 2) * 5 + 5LL * p;
    o[0] = (unsigned char)(cb >> 2);
    o[1] = (unsigned char)(((cb & 3) << 6) | (y0 >> 4));
    o[2] = (unsigned char)(((y0 & 15) << 4) | (cr >> 6));
    o[3] = (unsigned char)(((cr & 63) << 2) | (y1 >> 8));
    o[4] = (unsigned char)(y1 & 255);
}

extern "C" __global__ void pgroup422_10_to_rgb(
    unsigned long long in_ptr, int width, int height, unsigned long long out_ptr,
    int ky, int rcr, int gcb, int gcr, int bcb, int y_off, int c_mid)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (p >= width / 2 || row >= height) return;
    const unsigned char* s = (const unsigned char*)in_ptr + (long long)row * (width / 2) * 5 + 5LL * p;
    const int cb = (s[0] << 2) | (s[1] >> 6);
    const int y0 = ((s[1] & 63) << 4) | (s[2] >> 4);
    const int cr = ((s[2] & 15) << 6) | (s[3] >> 2);
    const int y1 = ((s[3] & 3) << 8) | s[4];
    const int dcb = cb - c_mid, dcr = cr - c_mid;
    const int c_r = rcr * dcr, c_g = gcb * dcb + gcr * dcr, c_b = bcb * dcb;
    unsigned char* o = (unsigned char*)out_ptr + ((long long)row * width + 2 * p) * 3;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
        const int ly = ky * ((k == 0 ? y0 : y1) - y_off) + 32768;
        o[3 * k] = (unsigned char)clampi((ly + c_r) >> 16, 0, 255);
        o[3 * k + 1] = (unsigned char)clampi((ly + c_g) >> 16, 0, 255);
        o[3 * k + 2] = (unsigned char)clampi((ly + c_b) >> 16, 0, 255);
    }
}
