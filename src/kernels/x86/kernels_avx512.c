/* kernels_avx512.c - the kernel table for CPUs with AVX-512 (F, BW, VL, DQ; Intel
 * Skylake-SP and later, AMD Zen 4 and later).
 *
 * Today it is the AVX2 kernels compiled for AVX-512: the same intrinsics, but the
 * compiler may encode them with EVEX and use the 32 vector registers, which removes the
 * spills of the 4 x 2 prompt tiles. CPUs that also have AVX-512 VNNI get the
 * avx512_vnni table instead (kernels_avx512_vnni.c: the same code with vpdpbusd); this
 * one stays for those without it (Skylake-SP). The k-quants have native 512-bit tiles
 * (kquant_x86.h: two 32-value groups per instruction). The table is chosen only when the CPU reports
 * AVX-512 (dispatch.c), and tests/kernels/test_kernels.c checks it entry by entry there. */
#define SOV_AVX2_TABLE sov_kernels_avx512
#define SOV_AVX2_ISA "avx512"
#include "kernels_avx2.c"
