/* kernels_avx512.c - the kernel table for CPUs with AVX-512 (F, BW, VL, DQ; Intel
 * Skylake-SP and later, AMD Zen 4 and later).
 *
 * Today it is the AVX2 kernels compiled for AVX-512: the same intrinsics, but the
 * compiler may encode them with EVEX and use the 32 vector registers, which removes the
 * spills of the 4 x 2 prompt tiles. Native 512-bit kernels (two block pairs per
 * instruction, and vpdpbusd where AVX-512 VNNI is present) are the next step; they are
 * held back until they can run against the kernel test on a machine that has AVX-512,
 * because an untested kernel selected automatically on such a machine could give wrong
 * answers. The table is chosen only when the CPU reports AVX-512 (dispatch.c), and
 * tests/kernels/test_kernels.c checks it entry by entry there. */
#define SOV_AVX2_TABLE sov_kernels_avx512
#define SOV_AVX2_ISA "avx512"
#include "kernels_avx2.c"
