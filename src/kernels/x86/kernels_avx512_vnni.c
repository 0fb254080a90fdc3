/* kernels_avx512_vnni.c - the kernel table for CPUs with AVX-512 (F, BW, VL, DQ) and
 * AVX-512 VNNI (Intel Cascade Lake and later, AMD Zen 4 and later).
 *
 * The AVX2 kernels again, compiled with -mavx512vnni as well: kernels_avx2.c then uses
 * vpdpbusd for its u8 x s8 dot products (one instruction for vpmaddubsw + vpmaddwd +
 * vpaddd), in the 32-block and planar q4_0 / q8_0 tiles and in q4_1 / q5_0 / q5_1. The
 * integer lanes are the same as with the AVX2 sequence and the float part is unchanged,
 * so the results are bit-identical with the avx2 and avx512 tables - except q4_0P, which
 * here has native 512-bit tiles (tiles_avx512.h, included by kernels_avx2.c under
 * AVX512F + VNNI): exact integers as well, but the float sums in another order; and the
 * k-quants, whose 512-bit tiles (kquant_x86.h, vpdpwssd here) equal the avx512 table's bit
 * for bit but not avx2's.
 * dispatch.c picks this table only when cpuid reports AVX512_VNNI as well as what the avx512 table needs;
 * the plain avx512 table stays for AVX-512 CPUs without VNNI (Skylake-SP). */
#define SOV_AVX2_TABLE sov_kernels_avx512_vnni
#define SOV_AVX2_ISA "avx512_vnni"
#include "kernels_avx2.c"
