/* BLAKE2b compression function (RFC 7693, section 3.2), shared by features/_online.pyx
 * (h6: BLAKE2b-48 of call keys, IMEIs, cells, numbers) and features/_registry_pack.pyx
 * (keyed BLAKE2b-64 of owner references). Both are checked against hashlib.blake2b in the
 * tests. Header-only: each extension includes it and gets its own static copy. */
#ifndef CS_BLAKE2B_H
#define CS_BLAKE2B_H

#include <stdint.h>

static const uint64_t cs_blake2b_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const uint8_t cs_blake2b_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t cs_blake2b_rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline void cs_blake2b_mix(uint64_t* v, int a, int b, int c, int d, uint64_t x, uint64_t y) {
    v[a] = v[a] + v[b] + x;
    v[d] = cs_blake2b_rotr(v[d] ^ v[a], 32);
    v[c] = v[c] + v[d];
    v[b] = cs_blake2b_rotr(v[b] ^ v[c], 24);
    v[a] = v[a] + v[b] + y;
    v[d] = cs_blake2b_rotr(v[d] ^ v[a], 16);
    v[c] = v[c] + v[d];
    v[b] = cs_blake2b_rotr(v[b] ^ v[c], 63);
}

/* One compression of a 128-byte block into the state h; t = bytes hashed so far including
 * this block; last = the final block. */
static void cs_blake2b_compress(uint64_t* h, const uint8_t* block, uint64_t t, int last) {
    uint64_t v[16], m[16];
    int i, k, r;
    for (i = 0; i < 16; i++) {
        m[i] = 0;
        for (k = 0; k < 8; k++) m[i] |= ((uint64_t)block[i * 8 + k]) << (8 * k);
    }
    for (i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = cs_blake2b_iv[i];
    }
    v[12] ^= t;
    if (last) v[14] = ~v[14];
    for (r = 0; r < 12; r++) {
        const uint8_t* s = cs_blake2b_sigma[r];
        cs_blake2b_mix(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
        cs_blake2b_mix(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
        cs_blake2b_mix(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
        cs_blake2b_mix(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
        cs_blake2b_mix(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
        cs_blake2b_mix(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
        cs_blake2b_mix(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
        cs_blake2b_mix(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

#endif
