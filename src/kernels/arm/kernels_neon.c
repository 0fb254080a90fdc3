/* kernels_neon.c - the baseline AArch64 NEON kernel table (ARMv8-A, every 64-bit Arm
 * server CPU). The code is shared with the dot-product table in neon_impl.h. */
#define SOV_NEON_DOTPROD 0
#define NAME(x) neon_##x
#include "kernels/arm/neon_impl.h"

const sov_kernels sov_kernels_neon = NEON_TABLE("neon");
